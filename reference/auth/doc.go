// Package auth is the data-plane authentication and authorisation of the
// reference proxy: it verifies OIDC-issued JWT bearer tokens and decides,
// per namespace, whether a call may read or write. [Authorizer] does the
// checks; [Interceptor] applies them to every call of a gRPC server; the
// proxy installs it in front of routing when auth is on (when auth is off,
// for local development, the interceptor is not installed at all, and the
// proxy says so loudly at start).
//
// # Token rules
//
// Token parsing and signature verification use github.com/lestrrat-go/jwx/v3;
// this package adds the rules the library leaves to its caller. A token is
// accepted only when all of these hold (the cheap checks come first: the
// size before any parsing, the header before any key lookup, the key lookup
// before the signature, the signature before the claims):
//
//   - it is at most max_token_bytes long (default 8 KiB), checked before any
//     parsing;
//   - it is a compact JWS of three non-empty segments (a stripped signature
//     is refused);
//   - its protected header is a JSON object without duplicate members; its
//     alg is in the allow-list, compared exactly (default RS256, ES256);
//     "none" is refused in any letter case and can never be allowed; HS256,
//     HS384 and HS512 are allowed only when configured with a shared secret,
//     and verify only with that secret (never with a key from the JWKS, so
//     an HS256 token "signed" with the issuer's RSA public key fails);
//   - it has no crit header (no critical extension is supported) and no b64;
//   - it has a kid. The key is looked up by kid in the issuer's JWKS, found
//     by OIDC discovery (<issuer>/.well-known/openid-configuration →
//     jwks_uri) and fetched with a bounded timeout. An unknown kid causes a
//     refetch only when the last fetch started at least
//     jwks_refetch_interval ago (default 1m), so a burst of tokens with
//     random kids costs at most one fetch; then the token is refused. The
//     key must fit the alg (RSA ≥ 2048 bits for RS*/PS*, the matching curve
//     for ES*, Ed25519 for EdDSA, and the JWK's own alg when it has one);
//     symmetric keys in a JWKS are ignored;
//   - jku, x5u, jwk and x5c headers are ignored: keys are never fetched from
//     or trusted because of anything in the token;
//   - the signature verifies;
//   - exp is present and not passed (with clock_skew, default 30s, at most
//     5m), nbf (if any) is not beyond now + skew, iat (if any) is not beyond
//     now + skew;
//   - the payload is a JSON object without duplicate members; exp, nbf and
//     iat are JSON numbers (RFC 7519 NumericDate: "exp":"1900000000" is
//     refused, though jwx reads it);
//   - with max_token_lifetime (default 24h; 0 turns it off), exp - iat and
//     exp - now are at most that (plus clock_skew for exp - now), so a token
//     minted for year 10000 is refused, not cached;
//   - sub is a non-empty string (allow_missing_subject turns this off);
//   - iss equals the configured issuer; aud, a string or an array of
//     strings, contains the configured audience, compared exactly (a token
//     without aud is refused).
//
// Any failure is [ErrUnauthenticated], whose message is always "invalid or
// missing credentials"; what exactly failed is in [Error.Reason], for a
// debug log field. The token itself is never logged or put in an error.
// While the issuer's keys have never been fetched (issuer down at start),
// tokens get [ErrUnavailable]; once fetched, keys are kept when a later
// fetch fails. The key set is refreshed in the background when older than
// jwks_max_age (default 5m), so a key the issuer removes stops verifying
// tokens within about that time, cached ones included.
//
// # Time
//
// A token is valid until exp + clock_skew, cached or not: the cache answers
// a token only until its exp, then verifies it again. A call is checked when
// it starts, and a unary call runs to its end; an open-ended stream
// ([OpenEnded]: a subscription) is ended with Unauthenticated when its
// token expires while it is open (see [Interceptor.Stream]).
//
// # Grants
//
// A valid token's grants come from one claim (grants.claim: scope, scp,
// groups or any claim name), a space-separated string or an array of
// strings. A value matching grants.pattern (default
// "prism:{namespace}:{access}", e.g. "prism:orders:read") grants that
// access on that namespace; a value listed in grants.mapping grants the
// namespaces mapped to it (for groups and roles; "*" there means every
// namespace). Read and write are separate: write does not imply read.
// [MethodAccess] says which access each method needs. A valid token without
// the grant is [ErrPermissionDenied], naming the namespace and the access.
//
// # Cost
//
// Verified tokens are cached (by the SHA-256 of the token, in a bounded LRU
// of cache_size entries) until their exp, so a client reusing its token
// pays a hash and a map lookup per call; see BenchmarkVerifyCached.
package auth
