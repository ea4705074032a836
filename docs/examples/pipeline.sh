#!/bin/sh
# EdgeFleet as a CI/CD pipeline step (issue 21; docs/operations.md "fleetctl in a pipeline"):
#   validate offline -> push -> canary -> wait for the gates -> everyone,
#   or roll back and fail with fleetctl's exit code.
#
# Usage:  pipeline.sh MODEL VERSION MODEL.onnx [SAMPLES.json]
# Needs:  EDGEFLEET_SERVER and EDGEFLEET_TOKEN (an operator token) in the environment.
# Knobs (environment, all optional):
#   FLEETCTL            how to run fleetctl (default: fleetctl)
#   TARGET_TAG          devices to roll out to, key=value (default: ring=production)
#   CANARY_PERCENT      the first stage's share of the target (default: 10)
#   SOAK_SECONDS        how long the canary soaks before its gates decide (default: 600)
#   PROBATION_SECONDS   each device's probation window (default: 60)
#   WAIT_SECONDS        give up waiting after this long (default: 3600; exit 7, the rollout goes on)
#   QUANTIZE            int8 | none (default: int8)
#   PUSH_FLAGS          extra flags for `fleetctl models push`
#
# Exit codes (fleetctl's): 0 everyone runs VERSION; 3 the model is refused offline; 5 a gate
# stopped the rollout (this script then rolls it back); 6 rolled back; 7 timed out; 8 the token
# is refused; 1 anything else.
set -u

FLEETCTL=${FLEETCTL:-fleetctl}
MODEL=$1
VERSION=$2
FILE=$3
SAMPLES=${4:-}
TARGET_TAG=${TARGET_TAG:-ring=production}
QUANTIZE=${QUANTIZE:-int8}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

set -- --quantize "$QUANTIZE"
if [ -n "$SAMPLES" ]; then set -- "$@" --samples "$SAMPLES"; fi

echo "== validate $FILE offline (the server's own checks)"
$FLEETCTL models validate "$FILE" "$@"
code=$?
# 4: fp32 passes, int8 does not; the server will publish fp32 only. Anything else stops here.
if [ "$code" -ne 0 ] && [ "$code" -ne 4 ]; then
  echo "== refused before upload (exit $code)"
  exit "$code"
fi

echo "== push $MODEL $VERSION"
# shellcheck disable=SC2086 # PUSH_FLAGS is a list of flags
$FLEETCTL models push "$FILE" --name "$MODEL" --version "$VERSION" "$@" ${PUSH_FLAGS:-} || exit $?

echo "== roll out: ${CANARY_PERCENT:-10}% canary, then everyone; a tripped gate rolls back"
$FLEETCTL --json rollouts create --model "$MODEL" --version "$VERSION" --tag "$TARGET_TAG" \
  --stage "${CANARY_PERCENT:-10}:${SOAK_SECONDS:-600}" --stage 100 \
  --max-failed-percent 0 --abort-action rollback \
  --probation-seconds "${PROBATION_SECONDS:-60}" \
  --wait --timeout "${WAIT_SECONDS:-3600}" >"$OUT"
code=$?
ROLLOUT=$(sed -n 's/^  "id": "\(r-[0-9a-f]*\)",$/\1/p' "$OUT" | head -n 1)

case $code in
  0) echo "== $MODEL $VERSION runs on every device tagged $TARGET_TAG ($ROLLOUT)" ;;
  5)
    echo "== a gate stopped $ROLLOUT: rolling it back"
    $FLEETCTL rollouts rollback "$ROLLOUT" >/dev/null
    $FLEETCTL rollouts wait "$ROLLOUT" --timeout "${WAIT_SECONDS:-3600}" >/dev/null
    ;;
  6) echo "== $ROLLOUT rolled back by its gate: devices run the version before $VERSION" ;;
  7) echo "== $ROLLOUT still moving after ${WAIT_SECONDS:-3600}s; see: fleetctl rollouts status $ROLLOUT" ;;
  *) echo "== rollout failed (exit $code)" ;;
esac
exit "$code"
