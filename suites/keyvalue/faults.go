package keyvalue

func describeFaults(sess func() *session) {}
