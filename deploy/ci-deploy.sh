#!/usr/bin/env bash
# Deploys one pushed image to a Docker Compose host over SSH, checks the public /health,
# and rolls the host back with deploy/rollback.py when the update or the check fails.
# CI's deploy job runs it (.github/workflows/deploy.yml; docs/deploy.md, "CI/CD"):
#
#   DEPLOY_HOST=calls.example.com APP_URL=https://calls.example.com \
#   COMPOSE_FILE=docker-compose.yml:docker-compose.prod.yml \
#   IMAGE=ghcr.io/acme/callcenter IMAGE_TAG=<commit sha> bash deploy/ci-deploy.sh
#
# The host holds a git checkout of the repository at DEPLOY_PATH (docs/deploy.md, Deploy)
# whose `origin` it can fetch, and a user DEPLOY_USER who runs docker. On it, this script:
#   1. tags the commit running now, unless a tag names it already (deployed-<sha12>): the
#      tag rollback.py goes back to;
#   2. fetches, checks out IMAGE_TAG's commit (the Compose files and rollback.py of the
#      release), pulls IMAGE:IMAGE_TAG and names it callcenter:latest, the image
#      docker-compose.yml runs; runs the `migrate` service, then `up -d --no-build`.
# Then, from here, it asks APP_URL/health until it answers 200 (HEALTH_TIMEOUT seconds,
# 300). If step 2 or the check fails: `python3 deploy/rollback.py --version <tag of step 1>
# --migrations $ROLLBACK_MIGRATIONS` on the host, and exit 1. A commit older than the one
# deployed (a slower run of an earlier merge) is skipped: exit 0, nothing changed.
#
# Optional: DEPLOY_USER (deploy), DEPLOY_PATH (/srv/callcenter), DEPLOY_SSH_OPTIONS (extra
# ssh options), ROLLBACK_MIGRATIONS (ignore: the Update rule keeps a release's migrations
# compatible with the release before; refuse or migrate-back otherwise), HEALTH_INTERVAL
# (10), REGISTRY_USER and REGISTRY_TOKEN (a `docker login` for the pull, logged out after;
# the token goes through stdin).
#
# Exit status: 0 deployed (or skipped as older), 1 failed (rolled back if it could be),
# 2 bad configuration (nothing changed).
set -euo pipefail

# The image docker-compose.yml's services run (`image:`), and an exit status of step 2.
LOCAL_IMAGE=callcenter:latest
OLDER_THAN_DEPLOYED=10

# --- On the host ---------------------------------------------------------------------
host_prepare() {  # PATH -> prints the tag of the commit running now
    cd "$1"
    local changed
    changed="$(git status --porcelain --untracked-files=no)"
    if [ -n "$changed" ]; then
        printf 'ci-deploy: %s has uncommitted changes (a checkout could lose them, and rollback.py refuses):\n%s\n' "$1" "$changed" >&2
        return 1
    fi
    local tag
    tag="$(git describe --tags --exact-match HEAD 2>/dev/null | head -n 1 || true)"
    if [ -z "$tag" ]; then
        tag="deployed-$(git rev-parse --short=12 HEAD)"
        git tag "$tag" HEAD
    fi
    printf '%s\n' "$tag"
}

host_update() {  # PATH SHA IMAGE_REF COMPOSE_FILE REGISTRY_USER (token on stdin when set)
    local path="$1" sha="$2" image="$3" compose_file="$4" registry_user="$5"
    cd "$path"
    git fetch --quiet --tags origin
    if ! git cat-file -e "$sha^{commit}" 2>/dev/null; then
        echo "ci-deploy: origin has no commit $sha" >&2
        return 1
    fi
    local head
    head="$(git rev-parse HEAD)"
    if [ "$sha" != "$head" ] && git merge-base --is-ancestor "$sha" "$head"; then
        echo "ci-deploy: $sha is older than the deployed ${head:0:12}: not deployed"
        return "$OLDER_THAN_DEPLOYED"
    fi
    echo "==> git checkout ${sha:0:12}"
    git checkout --quiet --detach "$sha"
    if [ -n "$registry_user" ]; then
        local registry="${image%%/*}"
        trap 'docker logout "'"$registry"'" >/dev/null 2>&1 || true' EXIT
        docker login "$registry" --username "$registry_user" --password-stdin
    fi
    echo "==> docker pull $image"
    docker pull "$image"
    docker tag "$image" "$LOCAL_IMAGE"
    export COMPOSE_FILE="$compose_file"
    echo "==> docker compose run --rm migrate"
    docker compose run --rm migrate
    echo "==> docker compose up -d --no-build"
    docker compose up -d --no-build
}

host_rollback() {  # PATH TAG COMPOSE_FILE MIGRATIONS
    cd "$1"
    export COMPOSE_FILE="$3"
    python3 deploy/rollback.py --version "$2" --migrations "$4"
}

if [ "${1:-}" = "--on-host" ]; then
    shift
    case "$1" in
        prepare | update | rollback) step="$1"; shift; "host_$step" "$@"; exit ;;
        *) echo "ci-deploy: unknown host step '$1'" >&2; exit 2 ;;
    esac
fi

# --- Here (the CI runner) ------------------------------------------------------------
SCRIPT="${BASH_SOURCE[0]}"
missing=()
for name in DEPLOY_HOST APP_URL COMPOSE_FILE IMAGE IMAGE_TAG; do
    [ -n "${!name:-}" ] || missing+=("$name")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "ci-deploy: not set: ${missing[*]} (docs/deploy.md, CI/CD)" >&2
    exit 2
fi
DEPLOY_USER="${DEPLOY_USER:-deploy}"
DEPLOY_PATH="${DEPLOY_PATH:-/srv/callcenter}"
ROLLBACK_MIGRATIONS="${ROLLBACK_MIGRATIONS:-ignore}"
case "$ROLLBACK_MIGRATIONS" in
    refuse | ignore | migrate-back) ;;
    *) echo "ci-deploy: ROLLBACK_MIGRATIONS must be refuse, ignore or migrate-back, not '$ROLLBACK_MIGRATIONS'" >&2; exit 2 ;;
esac
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-300}"
HEALTH_INTERVAL="${HEALTH_INTERVAL:-10}"
read -r -a ssh_options <<< "${DEPLOY_SSH_OPTIONS:-}"

# One word for the remote user's shell, whichever it is: single quotes, ' as '\''.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# Runs a host step: this script itself goes as the remote command's argument, so the
# remote stdin stays free (for the registry token).
on_host() {
    local command argument
    command="bash -c $(quote "$(cat "$SCRIPT")") ci-deploy --on-host"
    for argument in "$@"; do command+=" $(quote "$argument")"; done
    ssh "${ssh_options[@]}" "$DEPLOY_USER@$DEPLOY_HOST" "$command"
}

error() {
    if [ "${GITHUB_ACTIONS:-}" = "true" ]; then echo "::error::$*"; else echo "ci-deploy: $*" >&2; fi
}

# 0 once APP_URL/health answers 200, 1 when HEALTH_TIMEOUT seconds pass without.
healthy() {
    local url="${APP_URL%/}/health" deadline=$((SECONDS + HEALTH_TIMEOUT)) status
    while :; do
        # curl writes 000 when nothing answered (refused, timed out, TLS failed).
        status="$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 10 "$url" || true)"
        echo "GET $url: $([ "${status:-000}" = 000 ] && echo "no answer" || echo "$status")"
        [ "$status" = "200" ] && return 0
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep "$HEALTH_INTERVAL"
    done
}

image_ref="$IMAGE:$IMAGE_TAG"
echo "==> Deploying $image_ref to $DEPLOY_USER@$DEPLOY_HOST:$DEPLOY_PATH ($COMPOSE_FILE)"
previous="$(on_host prepare "$DEPLOY_PATH")" || { error "cannot prepare $DEPLOY_HOST: nothing changed"; exit 1; }
echo "Running now: $previous (the rollback target)"

status=0
printf '%s' "${REGISTRY_TOKEN:-}" \
    | on_host update "$DEPLOY_PATH" "$IMAGE_TAG" "$image_ref" "$COMPOSE_FILE" "${REGISTRY_TOKEN:+${REGISTRY_USER:-}}" \
    || status=$?
if [ "$status" -eq "$OLDER_THAN_DEPLOYED" ]; then
    echo "Skipped: a newer commit is deployed."
    exit 0
fi
if [ "$status" -eq 0 ]; then
    echo "==> Health check"
    if healthy; then
        echo "Deployed $image_ref: $APP_URL/health answers 200."
        exit 0
    fi
    error "$APP_URL/health did not answer 200 within ${HEALTH_TIMEOUT}s: rolling back to $previous"
else
    error "the update failed (exit status $status): rolling back to $previous"
fi

echo "==> python3 deploy/rollback.py --version $previous --migrations $ROLLBACK_MIGRATIONS (on the host)"
if on_host rollback "$DEPLOY_PATH" "$previous" "$COMPOSE_FILE" "$ROLLBACK_MIGRATIONS"; then
    if healthy; then
        echo "Rolled back to $previous, which answers 200."
    else
        error "rolled back to $previous, but $APP_URL/health still does not answer 200"
    fi
else
    error "the rollback to $previous failed too (its output is above): the host needs a person"
fi
exit 1
