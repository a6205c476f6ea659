package nats

import _ "embed"

// BackendDefinition is backend.yaml, the nats backend in the backend
// definition format (harness/backend/definition), embedded so that the
// harness needs no checkout to start a nats instance.
//
//go:embed backend.yaml
var BackendDefinition []byte
