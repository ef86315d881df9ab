#!/usr/bin/env bash
# Call the example Greeter function through fngate with grpcurl
# (go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest, or `make tools`).
#
#   FNGATE_API_KEY=... FNGATE_FUNCTION_ID=... examples/grpcurl.sh
#
# FNGATE_ADDR (default localhost:10081); FNGATE_TLS=1 for TLS, FNGATE_CA=ca.pem to trust a CA.
set -euo pipefail

addr=${FNGATE_ADDR:-localhost:10081}
if [[ -z ${FNGATE_API_KEY:-} || -z ${FNGATE_FUNCTION_ID:-} ]]; then
  echo "set FNGATE_API_KEY and FNGATE_FUNCTION_ID (fngate local prints both)" >&2
  exit 1
fi

# Every call carries the key and the function to invoke (the NVCF metadata contract).
opts=(-import-path "$(dirname "$0")/../protos" -proto greeter.proto
      -H "authorization: Bearer $FNGATE_API_KEY" -H "function-id: $FNGATE_FUNCTION_ID")
if [[ ${FNGATE_TLS:-} == 1 ]]; then
  [[ -n ${FNGATE_CA:-} ]] && opts+=(-cacert "$FNGATE_CA")
else
  opts+=(-plaintext)
fi

# call METHOD JSON: prints the replies and the session id fngate returned (-v shows the
# response headers, or the trailers when the call fails at once); fails if the call does.
call() {
  local out reqid rc=0
  echo "== $1"
  out=$(grpcurl "${opts[@]}" -v -d "$2" "$addr" "helloworld.Greeter/$1") || rc=$?
  sed -n '/^Response contents:$/,/^}$/{/^Response contents:$/!p}' <<<"$out"
  reqid=$(sed -n 's/^nvcf-reqid: //p' <<<"$out" | head -n1)
  echo "(nvcf-reqid: ${reqid:-none})"
  return "$rc"
}

call SayHello '{"name": "fngate"}'
call SayHelloStream '{"name": "fngate", "count": 3}'
call Chat '{"name": "Alice"} {"name": "Bob"}'
