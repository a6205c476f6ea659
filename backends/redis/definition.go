package redis

import _ "embed"

// BackendDefinition is backend.yaml, the redis backend in the backend
// definition format (harness/backend/definition), embedded so that the
// harness needs no checkout to start a redis instance.
//
//go:embed backend.yaml
var BackendDefinition []byte
