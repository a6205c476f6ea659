package registry

// The registry mutants (see registrymutant for their names and what each
// breaks) are built into the coordinator only with -tags prism_mutants
// (mutant_on.go). In the default build (mutant_off.go) the coordinator
// reads no environment variable, [Coordinator.has] is the constant false and
// every hook below is compiled out.

// mutantID identifies a registry mutant inside the coordinator; the names
// live in registrymutant, linked only into a prism_mutants build.
type mutantID uint8

// The registry mutants' ids (noMutant: none).
const (
	noMutant mutantID = iota
	mutantFilterIgnoresClause
	mutantNeMissingWrong
	mutantExpiredEnumerated
	mutantReplaceIgnored
	mutantQuotaCountsExpired
	mutantMulticastTwice
	mutantDeliveredNoReceiver
	mutantContainsListSubstring
	mutantLteGteStrict
	mutantEqCoercesTypes
	mutantEqCaseInsensitive
	mutantStartsWithAnywhere
	mutantExistsEmptyAbsent
	mutantIntComparedAsFloat
	mutantExpiredRegisterRefused
	mutantExpiredHeartbeatRevives
	mutantExpiredUnregisterExisted
	mutantExpiredReceiveOpens
	mutantHeartbeatExpiresEarly
	mutantFanoutIgnoresDeadline
)
