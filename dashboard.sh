#!/bin/sh
# The original bridge's `./dashboard.sh`: now `ponte status --watch`, refreshing every 2 s.
# Any option is passed on: ./dashboard.sh --url https://ponte.example.com  (SERVER_ADMIN_TOKEN
# from the environment or .env), or ./dashboard.sh --watch 5. See `ponte status --help`.
cd "$(dirname "$0")" || exit 1
if [ ! -x .venv/bin/ponte ]; then
    echo "dashboard.sh: .venv/bin/ponte is missing: run \`make setup\` first" >&2
    exit 1
fi
case " $* " in
    *" --watch"*) exec .venv/bin/ponte status "$@" ;;
    *) exec .venv/bin/ponte status --watch "$@" ;;
esac
