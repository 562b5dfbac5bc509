package chart

// chartCase is one combination of values: its golden file is
// testdata/NAME.golden.
type chartCase struct {
	name   string
	values string // a values file (YAML); empty means the chart's defaults
}

// cases are the combinations operators use; each is linted, rendered against
// its golden file, flag-checked and applied with server-side dry-run.
var cases = []chartCase{
	{name: "default"},
	{name: "init-container", values: `
image:
  repository: registry.example/team/server
  tag: "1.4.0"
hotswapBinary:
  from: initContainer
  image:
    tag: "0.1.0"
command: [/app/server, --config, /etc/server/config.yaml]
release:
  version: "1.4.0"
`},
	{name: "image-volume", values: `
image:
  repository: registry.example/team/server
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
hotswapBinary:
  from: imageVolume
command: [/app/server]
`},
	{name: "watch-emptydir", values: `
release:
  volume:
    enabled: true
  watch: /releases/current
  settle: 2s
  requireSha256: false
  preflight: --version
`},
	{name: "watch-pvc", values: `
replicaCount: 3
release:
  volume:
    enabled: true
    existingClaim: server-releases
  watch: /releases/current
  root: /releases
`},
	{name: "configmap-informer", values: `
release:
  volume:
    enabled: true
  configMap:
    enabled: true
    manifest:
      version: v1
      binary: /releases/v1/server
      sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      args: [--port-from-fds]
  requireSha256: true
`},
	{name: "configmap-mount", values: `
release:
  volume:
    enabled: true
  configMap:
    enabled: true
    via: mount
    name: server-release
kube:
  reporting: "on"
`},
	{name: "reporting-off", values: `
kube:
  reporting: "off"
  readinessGate: false
admin:
  enabled: false
`},
	{name: "reuseport-nginx", values: `
image:
  repository: registry.example/team/nginx-hotswap
  tag: "1.27"
command: [/usr/sbin/nginx, -g, "daemon off;"]
mode: reuseport
ready: http=http://127.0.0.1:8081/healthz
notifyAccess: all
signals:
  stop: QUIT
  rewrite: ["TERM:QUIT"]
reuseport:
  migrateReq: true
timeouts:
  drainSeconds: 60
  graceSeconds: 70
`},
	{name: "servicemonitor", values: `
kube:
  unreadyDuringSwap: true
admin:
  scrapeAnnotations: false
  serviceMonitor:
    enabled: true
    labels:
      release: prometheus
listeners:
  - name: http
    port: 8080
    servicePort: 80
  - name: grpc
    port: 9000
onExit: restart
terminationGracePeriodSeconds: 60
`},
}
