package nats

// Permissions are the subjects a NATS user needs to run this plugin with
// one config, and no more: give each namespace its own subject_prefix,
// stream and payload_bucket (prefixes that do not nest: "orders" and
// "events", never "orders" and "orders.eu") and a user with these
// permissions, and one namespace's plugin cannot publish to, subscribe to or
// manage another's subjects, stream or object store. In nats-server's config:
//
//	authorization {
//	  users = [
//	    {user: prism-orders, password: $ORDERS_PASSWORD,
//	     permissions: {publish: {allow: [...Publish]}, subscribe: {allow: [...Subscribe]}}}
//	  ]
//	}
//
// The plugin's replies come to inboxes under "_INBOX.<subject_prefix>.", so
// a user cannot read another namespace's replies either.
type Permissions struct {
	// Publish lists the subjects the user may publish to.
	Publish []string
	// Subscribe lists the subjects the user may subscribe to.
	Subscribe []string
}

// PermissionsFor returns the permissions a plugin configured with o needs.
func PermissionsFor(o Options) Permissions {
	p, s, obj := o.SubjectPrefix, o.Stream, "OBJ_"+o.PayloadBucket
	pub := []string{
		p + ".>",                       // messages
		"$JS.API.INFO",                 // Init checks JetStream
		"$O." + o.PayloadBucket + ".>", // large payloads
	}
	for _, st := range []string{s, obj} {
		pub = append(pub,
			"$JS.API.STREAM.*."+st,          // CREATE, UPDATE, INFO
			"$JS.API.STREAM.*.*."+st,        // MSG.GET, MSG.DELETE
			"$JS.API.DIRECT.GET."+st,        // direct gets (object store)
			"$JS.API.DIRECT.GET."+st+".>",   //
			"$JS.API.CONSUMER.*."+st,        // NAMES, LIST
			"$JS.API.CONSUMER.*."+st+".>",   // CREATE, INFO, DELETE
			"$JS.API.CONSUMER.*.*."+st+".>", // DURABLE.CREATE, MSG.NEXT
			"$JS.ACK."+st+".>",              // acknowledgements
			"$JS.FC."+st+".>",               // flow control of ordered consumers
		)
	}
	return Permissions{Publish: pub, Subscribe: []string{p + ".>", inboxPrefix(o) + ".>"}}
}

// inboxPrefix is where the plugin's replies come to: under its subject
// prefix, so that permissions can keep namespaces' replies apart.
func inboxPrefix(o Options) string { return "_INBOX." + o.SubjectPrefix }
