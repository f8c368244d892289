#!/bin/sh
# pykbroker container entrypoint: the apache/kafka image's conventions that are not plain
# config keys, then `exec python -m pykbroker "$@"`.
#
# Plain KAFKA_* variables (KAFKA_LISTENERS, KAFKA_ADVERTISED_LISTENERS, KAFKA_NODE_ID, ...) need
# nothing here: pykbroker maps them itself, exactly as the apache/kafka image does, including
# "only KAFKA_ADVERTISED_LISTENERS given -> bind 0.0.0.0 on the advertised ports".
#
# What this script adds:
#   * container defaults, at the lowest precedence (below the KAFKA_* environment and
#     --override), written to a properties file passed as the config file -- only when no
#     config file is given on the command line:
#         listeners=PLAINTEXT://0.0.0.0:9092   (pykbroker's own default is localhost:9092,
#                                               unreachable from outside a container)
#         log.dirs=/var/lib/pykbroker/data     (the image's data volume)
#   * CLUSTER_ID: the apache/kafka image formats storage with it (kafka-storage format
#     --ignore-formatted). pykbroker keeps the cluster id in meta.properties, so the script
#     writes meta.properties with that id into every log directory that has none yet; a
#     directory already formatted keeps its id (a warning is printed when it differs).
#     Without CLUSTER_ID the broker generates a random id on first start.
#
# Environment of this script only (not broker configs):
#   PYKBROKER_DEFAULT_LOG_DIRS   default data directory (default /var/lib/pykbroker/data)
#   PYKBROKER_DEFAULT_LISTENERS  default listeners (default PLAINTEXT://0.0.0.0:9092)
set -eu

default_log_dirs=${PYKBROKER_DEFAULT_LOG_DIRS:-/var/lib/pykbroker/data}
default_listeners=${PYKBROKER_DEFAULT_LISTENERS:-PLAINTEXT://0.0.0.0:9092}

warn() {
    printf 'pykbroker entrypoint: %s\n' "$*" >&2
}

# Is a config file among the arguments? (positional argument or --config FILE)
config_file=
expect_value=
for arg in "$@"; do
    if [ -n "$expect_value" ]; then
        [ "$expect_value" = config ] && config_file=$arg
        expect_value=
        continue
    fi
    case $arg in
        --config) expect_value=config ;;
        --config=*) config_file=${arg#--config=} ;;
        --override|--log-level) expect_value=skip ;;
        -*) ;;
        *) config_file=$arg ;;
    esac
done

# The value of a key in a properties file (simple "key=value" / "key: value" lines only).
prop() {
    sed -n "s/^[[:space:]]*$(printf '%s' "$1" | sed 's/\./\\./g')[[:space:]]*[=:][[:space:]]*//p" \
        "$2" 2>/dev/null | tail -n 1
}

set_defaults=
if [ -z "$config_file" ]; then
    set_defaults=yes
    defaults_file=$(mktemp "${TMPDIR:-/tmp}/pykbroker-defaults.XXXXXX")
    {
        echo "# container defaults written by docker/entrypoint.sh"
        echo "listeners=$default_listeners"
        echo "log.dirs=$default_log_dirs"
    } >"$defaults_file"
    set -- "$defaults_file" "$@"
fi

# The log directories the broker will use (for CLUSTER_ID), as pykbroker resolves them:
# --override beats KAFKA_* beats the config file; log.dirs beats log.dir.
log_dirs=
expect_value=
for arg in "$@"; do
    if [ "$expect_value" = override ]; then
        case $arg in
            log.dirs=*) log_dirs=${arg#log.dirs=} ;;
            log.dir=*) [ -n "$log_dirs" ] || log_dirs=${arg#log.dir=} ;;
        esac
    fi
    case $arg in
        --override=log.dirs=*) log_dirs=${arg#--override=log.dirs=} ;;
        --override=log.dir=*) [ -n "$log_dirs" ] || log_dirs=${arg#--override=log.dir=} ;;
    esac
    expect_value=
    [ "$arg" = --override ] && expect_value=override
done
[ -n "$log_dirs" ] || log_dirs=${KAFKA_LOG_DIRS:-${KAFKA_LOG_DIR:-}}
if [ -z "$log_dirs" ]; then
    if [ -n "$set_defaults" ]; then
        log_dirs=$default_log_dirs
    elif [ -f "$config_file" ]; then
        log_dirs=$(prop log.dirs "$config_file")
        [ -n "$log_dirs" ] || log_dirs=$(prop log.dir "$config_file")
    fi
fi

if [ -n "${CLUSTER_ID:-}" ]; then
    if ! printf '%s\n' "$CLUSTER_ID" | grep -Eq '^[A-Za-z0-9_-]{22}$'; then
        warn "CLUSTER_ID '$CLUSTER_ID' is not a Kafka cluster id (22 characters of" \
             "URL-safe base64, as 'kafka-storage random-uuid' prints)"
        exit 2
    fi
    if [ -z "$log_dirs" ]; then
        warn "cannot tell the log directories; CLUSTER_ID is ignored"
    else
        node_id=${KAFKA_NODE_ID:-${KAFKA_BROKER_ID:-}}
        old_ifs=$IFS
        IFS=,
        for dir in $log_dirs; do
            IFS=$old_ifs
            dir=$(printf '%s' "$dir" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
            [ -n "$dir" ] || continue
            meta=$dir/meta.properties
            if [ -s "$meta" ]; then
                stored=$(prop cluster.id "$meta")
                if [ -n "$stored" ] && [ "$stored" != "$CLUSTER_ID" ]; then
                    warn "$dir is already formatted for cluster $stored; CLUSTER_ID" \
                         "$CLUSTER_ID is ignored there"
                fi
                continue
            fi
            mkdir -p "$dir"
            {
                echo "#"
                echo "#written by the pykbroker entrypoint from CLUSTER_ID"
                echo "version=0"
                # Without KAFKA_NODE_ID/KAFKA_BROKER_ID the id may come from a config file or
                # an override: leave it out, pykbroker then accepts any node id.
                [ -z "$node_id" ] || echo "broker.id=$node_id"
                echo "cluster.id=$CLUSTER_ID"
            } >"$meta.tmp"
            mv "$meta.tmp" "$meta"
        done
        IFS=$old_ifs
    fi
fi

exec python -m pykbroker "$@"
