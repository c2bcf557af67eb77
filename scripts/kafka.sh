#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft) for development and CI, assembled from Maven
# Central into .cache/kafka/<version>/libs and run with the machine's Java. See `--help`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KAFKA_SH_CACHE:-$ROOT/.cache/kafka}"
VERSION="${KAFKA_SH_VERSION:-4.1.2}"
LOG4J_VERSION="2.25.3"            # pinned for the slf4j bindings; Kafka 4.1 ships the same
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
HEAP="${KAFKA_SH_HEAP:-512m}"
START_TIMEOUT="${KAFKA_SH_START_TIMEOUT:-120}"
STOP_TIMEOUT="${KAFKA_SH_STOP_TIMEOUT:-30}"
SASL_USER="computewatch"
CURRENT="$CACHE/current"          # holds the run dir of the last broker started
PROBE="$ROOT/scripts/kafka_probe.py"

usage() {
  cat <<EOF
Usage: scripts/kafka.sh <command> [options]

Run a real single-node Apache Kafka $VERSION broker (KRaft) on 127.0.0.1 for development and CI.
The first start assembles Kafka from Maven Central into .cache/kafka/<version>/libs (needs mvn);
later starts use the cache and need only Java 17+.

Commands:
  start [--sasl] [--ssl] [--dir DIR]
                              format a fresh broker in .cache/kafka/run-<port>/ (or DIR), start it
                              in the background and wait until it serves metadata; prints
                                COMPUTEWATCH_KAFKA_BOOTSTRAP=127.0.0.1:<port>
                              With --sasl also a SASL_PLAINTEXT listener (SCRAM-SHA-256; the user
                              is created at format time) and prints
                                COMPUTEWATCH_KAFKA_SASL_BOOTSTRAP=127.0.0.1:<port>
                                COMPUTEWATCH_KAFKA_SASL_MECHANISM=SCRAM-SHA-256
                                COMPUTEWATCH_KAFKA_SASL_USERNAME=$SASL_USER
                                COMPUTEWATCH_KAFKA_SASL_PASSWORD=<random, dev only>
                              With --ssl (implies --sasl) also a SASL_SSL listener (the same
                              user) whose certificate, for 127.0.0.1 and localhost, is signed by
                              a CA made with openssl at format time; prints
                                COMPUTEWATCH_KAFKA_SSL_BOOTSTRAP=127.0.0.1:<port>
                                COMPUTEWATCH_KAFKA_SSL_CAFILE=<run dir>/tls/ca.pem
                              A DIR that already holds a stopped broker is started again as is
                              (same data, same ports).
  stop [--keep] [--dir DIR]   SIGTERM the broker (SIGKILL after ${STOP_TIMEOUT}s) and delete its run
                              dir; --keep keeps data and ports for a later 'restart'
  restart [--dir DIR]         stop (keeping data) and start the same broker: same data, same port
  status [--dir DIR]          exit 0 and print the variables above if the broker runs, else exit 3
  help, -h, --help            this text

Without --dir, stop/restart/status act on the last broker started (its run dir is recorded in
.cache/kafka/current). Only one such broker at a time; use --dir for more.

Examples:
  set -a; eval "\$(scripts/kafka.sh start --sasl)"; set +a    # export the printed variables
  .venv/bin/python -m pytest -m kafka
  scripts/kafka.sh stop
  scripts/kafka.sh start >> "\$GITHUB_ENV"                    # CI: KEY=VALUE lines as they are

Environment: JAVA_HOME (else java on PATH), KAFKA_SH_VERSION (default $VERSION),
KAFKA_SH_HEAP (default $HEAP), KAFKA_SH_CACHE (default .cache/kafka),
KAFKA_SH_START_TIMEOUT / KAFKA_SH_STOP_TIMEOUT (seconds, defaults $START_TIMEOUT / $STOP_TIMEOUT).
Files in the run dir: broker.env (the variables), broker.pid, server.properties, logs/server.log,
and with --ssl tls/ca.pem (the CA to trust) and tls/broker.pem (the broker's key and certificate).
EOF
}

die() { echo "kafka.sh: error: $*" >&2; exit 1; }
note() { echo "kafka.sh: $*" >&2; }

find_python() {
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"
  elif command -v python3 >/dev/null 2>&1; then PY="python3"
  else die "python3 not found (needed to pick ports and probe the broker); create .venv first"
  fi
}

find_java() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then JAVA="$(command -v java)"
  else die "Java not found: Kafka $VERSION needs Java 17+ (apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
  fi
  local spec
  spec="$("$JAVA" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')"
  [[ "${spec%%.*}" =~ ^[0-9]+$ && "${spec%%.*}" -ge 17 ]] \
    || die "Kafka $VERSION needs Java 17+, but $JAVA is version '${spec:-unknown}'"
}

write_pom() {
  cat >"$1" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.computewatch</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>$VERSION</version>
  <packaging>pom</packaging>
  <dependencyManagement>
    <dependencies>
      <dependency>
        <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-bom</artifactId>
        <version>$LOG4J_VERSION</version><type>pom</type><scope>import</scope>
      </dependency>
    </dependencies>
  </dependencyManagement>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version>
    </dependency>
    <!-- log4j2 core is a Kafka dependency; these bind slf4j 1.x and 2.x to it -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId></dependency>
  </dependencies>
</project>
EOF
}

# Fill .cache/kafka/<version>/libs once; later calls return at once (no Maven).
assemble() {
  local dir="$CACHE/$VERSION"
  LIBS="$dir/libs"
  [[ -f "$dir/.complete" ]] && return 0
  command -v mvn >/dev/null 2>&1 \
    || die "Kafka $VERSION is not in $LIBS yet and Maven (mvn) is not installed to fetch it"
  mkdir -p "$dir"
  exec 9>"$dir/.lock"
  flock 9
  if [[ ! -f "$dir/.complete" ]]; then
    note "assembling Apache Kafka $VERSION from Maven Central into $LIBS (first run only)"
    write_pom "$dir/pom.xml"
    rm -rf "$LIBS.tmp"
    mvn -B -q -f "$dir/pom.xml" "$DEPENDENCY_PLUGIN:copy-dependencies" -DincludeScope=runtime \
        -DoutputDirectory="$LIBS.tmp" >"$dir/maven.log" 2>&1 \
      || die "Maven could not fetch Kafka $VERSION (see $dir/maven.log)"
    ls "$LIBS.tmp"/kafka_2.13-"$VERSION".jar >/dev/null 2>&1 \
      || die "Maven finished but kafka_2.13-$VERSION.jar is missing (see $dir/maven.log)"
    rm -rf "$LIBS"
    mv "$LIBS.tmp" "$LIBS"
    touch "$dir/.complete"
  fi
  exec 9>&-
}

write_log4j() {
  cat >"$1/log4j2.properties" <<'EOF'
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.filePattern = ${sys:kafka.logs.dir}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
EOF
}

# write_config RUN PORT CONTROLLER_PORT [SASL_PORT [SSL_PORT]]
write_config() {
  local run="$1" port="$2" cport="$3" sport="${4:-}" tport="${5:-}"
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://127.0.0.1:$port"
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [[ -n "$sport" ]]; then
    listeners+=",SASL_PLAINTEXT://127.0.0.1:$sport"
    advertised+=",SASL_PLAINTEXT://127.0.0.1:$sport"
    protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  if [[ -n "$tport" ]]; then
    listeners+=",SASL_SSL://127.0.0.1:$tport"
    advertised+=",SASL_SSL://127.0.0.1:$tport"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  cat >"$run/server.properties" <<EOF
# Written by scripts/kafka.sh: one KRaft node that is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
log.dirs=$run/data
num.partitions=4
auto.create.topics.enable=true
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# fewer internal partitions and threads: quicker first use on a small (2-core) machine
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=4
num.network.threads=2
num.io.threads=4
EOF
  if [[ -n "$sport" ]]; then
    cat >>"$run/server.properties" <<'EOF'
sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
  fi
  if [[ -n "$tport" ]]; then
    cat >>"$run/server.properties" <<EOF
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$run/tls/broker.pem
EOF
  fi
}

# make_tls RUN: in RUN/tls, a CA (ca.pem, to trust) and a certificate for 127.0.0.1 and
# localhost signed by it, with its key (broker.pem, the broker's PEM keystore); EC P-256, 30
# days. The CA's key is deleted once it has signed: nothing else is signed with it.
make_tls() {
  local tls="$1/tls"
  command -v openssl >/dev/null 2>&1 \
    || die "--ssl needs openssl to make the certificates (apt-get install openssl)"
  mkdir -p "$tls"
  (  # chained with &&: set -e does not apply in a subshell tested by ||
    umask 077 && cd "$tls" &&
    openssl req -x509 -new -noenc -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 30 \
      -subj "/CN=computewatch dev CA" -keyout ca.key -out ca.pem \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" &&
    openssl req -new -noenc -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -subj "/CN=127.0.0.1" -keyout broker.key -out broker.csr &&
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >broker.ext &&
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -days 30 -extfile broker.ext \
      -out broker.crt &&
    cat broker.key broker.crt >broker.pem &&
    rm -f ca.key broker.key broker.csr broker.ext broker.crt &&
    chmod 644 ca.pem
  ) >"$1/logs/tls.log" 2>&1 || die "making the TLS certificates failed (see $1/logs/tls.log)"
}

java_tool() {  # java_tool MAIN_CLASS ARGS... (short-lived JVM on the Kafka classpath)
  "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Dkafka.logs.dir="$RUN/logs" \
    -Dlog4j2.configurationFile="$RUN/log4j2.properties" -cp "$LIBS/*" "$@"
}

# format_new RUN SASL(0|1) SSL(0|1): pick ports, write config (with SSL, the certificates too)
# and format storage (with the SCRAM user).
format_new() {
  local run="$1" sasl="$2" ssl="$3" ports port cport sport="" tport="" cluster password=""
  mapfile -t ports < <("$PY" "$PROBE" free-ports 4)
  port="${ports[0]}" cport="${ports[1]}"
  [[ "$sasl" == 1 ]] && sport="${ports[2]}"
  [[ "$ssl" == 1 ]] && tport="${ports[3]}"
  if [[ -z "$run" ]]; then
    run="$CACHE/run-$port"
    rm -rf "$run"
  elif [[ -e "$run" && -n "$(ls -A "$run")" ]] && ! is_run_dir "$run"; then
    die "$run is not empty and holds no broker; give a new or empty dir"
  fi
  mkdir -p "$run/logs" "$run/data"
  RUN="$(cd "$run" && pwd)"
  write_log4j "$RUN"
  write_config "$RUN" "$port" "$cport" "$sport" "$tport"
  [[ -z "$tport" ]] || make_tls "$RUN"
  cluster="$("$PY" "$PROBE" cluster-id)"
  local scram=()
  if [[ "$sasl" == 1 ]]; then
    password="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(18))')"
    scram=(--add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$password]")
  fi
  java_tool kafka.tools.StorageTool format -t "$cluster" -c "$RUN/server.properties" "${scram[@]}" \
    >"$RUN/logs/format.log" 2>&1 || die "formatting storage failed (see $RUN/logs/format.log)"
  write_env "$RUN" "$port" "$sport" "$password" "$tport"
}

write_env() {
  local run="$1" port="$2" sport="$3" password="$4" tport="${5:-}"
  (
    umask 077
    {
      echo "COMPUTEWATCH_KAFKA_BOOTSTRAP=127.0.0.1:$port"
      if [[ -n "$sport" ]]; then
        echo "COMPUTEWATCH_KAFKA_SASL_BOOTSTRAP=127.0.0.1:$sport"
        echo "COMPUTEWATCH_KAFKA_SASL_MECHANISM=SCRAM-SHA-256"
        echo "COMPUTEWATCH_KAFKA_SASL_USERNAME=$SASL_USER"
        echo "COMPUTEWATCH_KAFKA_SASL_PASSWORD=$password"
      fi
      if [[ -n "$tport" ]]; then
        echo "COMPUTEWATCH_KAFKA_SSL_BOOTSTRAP=127.0.0.1:$tport"
        echo "COMPUTEWATCH_KAFKA_SSL_CAFILE=$run/tls/ca.pem"
      fi
    } >"$run/broker.env"
  )
  echo "$VERSION" >"$run/version"
}

is_run_dir() { grep -qs '^# Written by scripts/kafka.sh' "$1/server.properties"; }

env_value() { sed -n "s/^$2=//p" "$1/broker.env"; }

broker_pid() {  # print the PID of RUN's broker if it is alive and really ours
  local run="$1" pid
  [[ -f "$run/broker.pid" ]] || return 1
  pid="$(cat "$run/broker.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$run/server.properties" || return 1
  echo "$pid"
}

launch() {
  local pid bootstrap sasl_bootstrap ssl_bootstrap
  pid="$("$PY" "$PROBE" launch --log "$RUN/logs/stdout.log" -- \
    "$JAVA" -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dkafka.logs.dir="$RUN/logs" \
    -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$RUN/server.properties")"
  echo "$pid" >"$RUN/broker.pid"
  if [[ -z "${DIR:-}" ]]; then  # a broker in an explicit --dir is addressed by that dir only
    mkdir -p "$CACHE" && echo "$RUN" >"$CURRENT"
  fi
  bootstrap="$(env_value "$RUN" COMPUTEWATCH_KAFKA_BOOTSTRAP)"
  sasl_bootstrap="$(env_value "$RUN" COMPUTEWATCH_KAFKA_SASL_BOOTSTRAP)"
  ssl_bootstrap="$(env_value "$RUN" COMPUTEWATCH_KAFKA_SSL_BOOTSTRAP)"
  wait_ready "$pid" "$bootstrap" "$START_TIMEOUT"
  if [[ -n "$sasl_bootstrap" ]]; then
    "$PY" "$PROBE" wait --bootstrap "$sasl_bootstrap" --pid "$pid" --timeout 30 \
      --sasl-user="$(env_value "$RUN" COMPUTEWATCH_KAFKA_SASL_USERNAME)" \
      --sasl-password="$(env_value "$RUN" COMPUTEWATCH_KAFKA_SASL_PASSWORD)" \
      || fail_start "$pid" "the SASL/SCRAM listener at $sasl_bootstrap did not authenticate"
  fi
  if [[ -n "$ssl_bootstrap" ]]; then
    "$PY" "$PROBE" wait --bootstrap "$ssl_bootstrap" --pid "$pid" --timeout 30 \
      --sasl-user="$(env_value "$RUN" COMPUTEWATCH_KAFKA_SASL_USERNAME)" \
      --sasl-password="$(env_value "$RUN" COMPUTEWATCH_KAFKA_SASL_PASSWORD)" \
      --ssl-cafile "$(env_value "$RUN" COMPUTEWATCH_KAFKA_SSL_CAFILE)" \
      || fail_start "$pid" "the SASL_SSL listener at $ssl_bootstrap did not authenticate"
  fi
  note "Kafka $VERSION up at $bootstrap (pid $pid, dir $RUN)"
  cat "$RUN/broker.env"
}

wait_ready() {
  "$PY" "$PROBE" wait --bootstrap "$2" --pid "$1" --timeout "$3" \
    || fail_start "$1" "the broker did not come up"
}

fail_start() {
  local pid="$1"
  tail -n 15 "$RUN/logs/server.log" "$RUN/logs/stdout.log" >&2 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/broker.pid"
  die "$2 (logs: $RUN/logs/)"
}

resolve_run() {  # RUN from --dir or from the record of the last start
  if [[ -n "${DIR:-}" ]]; then RUN="$(cd "$DIR" 2>/dev/null && pwd)" || die "no such dir: $DIR"
  elif [[ -f "$CURRENT" ]]; then RUN="$(cat "$CURRENT")"
  else RUN=""
  fi
}

cmd_start() {
  find_python
  if [[ -z "${DIR:-}" && -f "$CURRENT" ]]; then
    local current pid
    current="$(cat "$CURRENT")"
    if pid="$(broker_pid "$current")"; then
      die "a broker is already running (pid $pid, $(env_value "$current" COMPUTEWATCH_KAFKA_BOOTSTRAP)); use 'scripts/kafka.sh status' or 'stop' first"
    fi
  fi
  if [[ -n "${DIR:-}" && -f "$DIR/data/meta.properties" ]]; then
    RUN="$(cd "$DIR" && pwd)"
    broker_pid "$RUN" >/dev/null && die "the broker in $RUN is already running"
    VERSION="$(cat "$RUN/version")"
    [[ "$SASL" == 0 || -n "$(env_value "$RUN" COMPUTEWATCH_KAFKA_SASL_BOOTSTRAP)" ]] \
      || die "$RUN was formatted without --sasl; start a fresh broker for SASL"
    [[ "$SSL" == 0 || -n "$(env_value "$RUN" COMPUTEWATCH_KAFKA_SSL_BOOTSTRAP)" ]] \
      || die "$RUN was formatted without --ssl; start a fresh broker for SSL"
    find_java
    assemble
    note "starting the existing broker in $RUN"
  else
    find_java
    assemble
    format_new "${DIR:-}" "$SASL" "$SSL"
  fi
  launch
}

cmd_stop() {
  resolve_run
  if [[ -z "$RUN" || ! -d "$RUN" ]]; then note "no broker to stop"; return 0; fi
  local pid
  if pid="$(broker_pid "$RUN")"; then
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && (( waited < STOP_TIMEOUT * 10 )); do
      sleep 0.1; waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      note "broker $pid ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    note "stopped broker $pid"
  else
    note "broker in $RUN was not running"
  fi
  rm -f "$RUN/broker.pid"
  if [[ "$KEEP" == 1 ]]; then
    note "kept $RUN (scripts/kafka.sh restart brings it back on the same port)"
  elif is_run_dir "$RUN"; then
    rm -rf "$RUN"
    [[ -f "$CURRENT" && "$(cat "$CURRENT")" == "$RUN" ]] && rm -f "$CURRENT"
  fi
  return 0
}

cmd_restart() {
  resolve_run
  [[ -n "$RUN" && -f "$RUN/data/meta.properties" ]] \
    || die "no broker to restart (start one with 'scripts/kafka.sh start')"
  KEEP=1 DIR="$RUN" cmd_stop
  DIR="$RUN" SASL=0 SSL=0 cmd_start
}

cmd_status() {
  resolve_run
  local pid
  if [[ -n "$RUN" ]] && pid="$(broker_pid "$RUN")"; then
    note "running: pid $pid, Kafka $(cat "$RUN/version"), dir $RUN"
    cat "$RUN/broker.env"
    return 0
  fi
  if [[ -n "$RUN" && -f "$RUN/data/meta.properties" ]]; then
    note "stopped; data kept in $RUN ('scripts/kafka.sh restart' starts it again)"
  else
    note "not running"
  fi
  return 3
}

main() {
  local command="${1:-}"
  [[ $# -gt 0 ]] && shift
  SASL=0 SSL=0 KEEP=0 DIR=""
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --sasl) SASL=1 ;;
      --ssl) SSL=1 SASL=1 ;;
      --keep) KEEP=1 ;;
      --dir) [[ $# -ge 2 ]] || die "--dir needs a directory"; DIR="$2"; shift ;;
      --dir=*) DIR="${1#--dir=}" ;;
      -h|--help) usage; exit 0 ;;
      *) die "unknown option '$1' for '$command' (see scripts/kafka.sh --help)" ;;
    esac
    shift
  done
  case "$command" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_restart ;;
    status) cmd_status ;;
    help|-h|--help) usage ;;
    "") usage >&2; exit 2 ;;
    *) die "unknown command '$command' (start, stop, restart, status; see --help)" ;;
  esac
}

main "$@"
