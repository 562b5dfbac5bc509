# Shared by hack/cluster-*.sh (sourced, with W set to the absolute WORKDIR).
# The names and addresses of one test cluster, and how its processes are
# started, waited for and stopped.

SUBNET=${HOTSWAP_CLUSTER_SUBNET:-10.244.250}
GATEWAY=$SUBNET.1
BRIDGE=hscluster0
NODE=${HOTSWAP_CLUSTER_NODE:-hotswap-node}
APISERVER_PORT=6443
ETCD_PORT=2379
CONTAINERD_SOCK=$W/containerd.sock
PAUSE_IMAGE=localhost/hotswap-pause:catatonit
CNI_BIN=/usr/lib/cni
# The processes of a cluster, in start order; cluster-down stops them in reverse.
COMPONENTS="etcd apiserver controller-manager scheduler containerd kubelet"

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

# start NAME CMD ARGS...: run CMD in its own session, logs to logs/NAME.log,
# pid to NAME.pid. setsid from a non-interactive shell execs in place, so $!
# is the process itself.
start() {
  local name=$1; shift
  setsid "$@" >"$W/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$W/$name.pid"
}

# alive PID: running and not a zombie (a zombie's parent may be gone: it counts as stopped).
alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$st" != Z ]
}

all_alive() {
  local c
  for c in $COMPONENTS; do
    [ -f "$W/$c.pid" ] && alive "$(cat "$W/$c.pid")" || return 1
  done
}

# wait_for NAME SECONDS CMD...: poll CMD every 0.2 s; fail early with the log
# tail if NAME's process died.
wait_for() {
  local name=$1 secs=$2 i; shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if ! alive "$(cat "$W/$name.pid")"; then
      tail -n 20 "$W/logs/$name.log" >&2
      die "$name exited while starting (log: $W/logs/$name.log)"
    fi
    sleep 0.2
  done
  tail -n 20 "$W/logs/$name.log" >&2
  die "$name not ready after ${secs}s (log: $W/logs/$name.log)"
}

# stop NAME: SIGTERM, then SIGKILL after 10 s.
stop() {
  local pid i
  pid=$(cat "$W/$1.pid" 2>/dev/null) || return 0
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      log "$1 (pid $pid) still running after 10 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    fi
  fi
  rm -f "$W/$1.pid"
}

# The kubelet sets these sysctls at start (vm.overcommit_memory=1,
# kernel.panic=10, ...); cluster-down puts the recorded values back.
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables"
# Host directories the kubelet or containerd create when missing (paths they
# hard-code); cluster-down removes them again if it was so.
HOST_DIRS="/var/log/containers /var/log/pods /run/netns /var/run/netns /run/containerd /etc/cni /opt/cni /var/lib/kubelet /var/lib/cni /etc/kubernetes"

record_host_state() {
  local s d
  : >"$W/state/sysctl.saved"
  for s in $SYSCTLS; do
    sysctl -n "$s" >/dev/null 2>&1 && echo "$s=$(sysctl -n "$s")" >>"$W/state/sysctl.saved"
  done
  : >"$W/state/dirs.absent"
  for d in $HOST_DIRS; do [ -e "$d" ] || echo "$d" >>"$W/state/dirs.absent"; done
  ls /run/netns 2>/dev/null | sort >"$W/state/netns.before" || true
}
