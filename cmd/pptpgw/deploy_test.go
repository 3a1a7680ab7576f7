package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/pptpgw/pptpgw/cmd/pptpgw/config"
)

// The deploy/ files are checked here, without root or network: the
// example configuration against the option table, and the Kubernetes,
// compose, Docker and systemd files against what pptpgw needs from them.
// deploy/check.sh adds what needs tools (systemd-analyze, the Docker build
// script).

func deployPath(elem ...string) string {
	return filepath.Join(append([]string{"..", "..", "deploy"}, elem...)...)
}

// TestDeployConfigComplete: deploy/pptpgw.yaml sets every key `run` takes
// from a file, `run --config` parses it, and it documents the defaults.
func TestDeployConfigComplete(t *testing.T) {
	path := deployPath("pptpgw.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]any
	if err := yaml.Unmarshal(b, &keys); err != nil {
		t.Fatal(err)
	}
	def, err := config.Parse(config.CmdRun, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse(config.CmdRun, []string{"--config", path}, nil)
	if err != nil {
		t.Fatalf("pptpgw run --config %s: %v", path, err)
	}
	want := map[string]string{}
	for _, s := range def.Effective() {
		want[s.Name] = s.Value
	}
	for _, s := range got.Effective() {
		if s.Name == "config" { // a flag or PPTPGW_CONFIG, never a key
			continue
		}
		if _, ok := keys[s.Name]; !ok {
			t.Errorf("%s: no key %q", path, s.Name)
		}
		if s.Value != want[s.Name] {
			t.Errorf("%s: %s = %q, the default is %q", path, s.Name, s.Value, want[s.Name])
		}
	}
}

// k8sObject mirrors the parts of the Kubernetes API the manifest uses.
// Decoding with KnownFields rejects any other field, so a misspelt one
// ("hostNetwrok") fails here as it would in `kubectl apply`'s validation.
// (kubectl's own client-side dry run needs an API server; kubeconform is
// not packaged for Debian.)
type k8sObject struct {
	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   k8sMeta           `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	Spec       *k8sDaemonSetSpec `yaml:"spec"`
}

type k8sMeta struct {
	Name      string            `yaml:"name"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
}

type k8sDaemonSetSpec struct {
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	UpdateStrategy struct {
		Type          string `yaml:"type"`
		RollingUpdate struct {
			MaxUnavailable int `yaml:"maxUnavailable"`
		} `yaml:"rollingUpdate"`
	} `yaml:"updateStrategy"`
	Template struct {
		Metadata k8sMeta    `yaml:"metadata"`
		Spec     k8sPodSpec `yaml:"spec"`
	} `yaml:"template"`
}

type k8sPodSpec struct {
	HostNetwork  bool              `yaml:"hostNetwork"`
	DNSPolicy    string            `yaml:"dnsPolicy"`
	NodeSelector map[string]string `yaml:"nodeSelector"`
	Tolerations  []struct {
		Key      string `yaml:"key"`
		Operator string `yaml:"operator"`
		Effect   string `yaml:"effect"`
	} `yaml:"tolerations"`
	TerminationGracePeriodSeconds int            `yaml:"terminationGracePeriodSeconds"`
	Containers                    []k8sContainer `yaml:"containers"`
	Volumes                       []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		HostPath *struct {
			Path string `yaml:"path"`
			Type string `yaml:"type"`
		} `yaml:"hostPath"`
		EmptyDir *struct {
			Medium    string `yaml:"medium"`
			SizeLimit string `yaml:"sizeLimit"`
		} `yaml:"emptyDir"`
	} `yaml:"volumes"`
}

type k8sContainer struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	Args            []string `yaml:"args"`
	SecurityContext struct {
		Privileged               bool `yaml:"privileged"`
		AllowPrivilegeEscalation bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool `yaml:"readOnlyRootFilesystem"`
		RunAsUser                int  `yaml:"runAsUser"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	LivenessProbe  k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe k8sProbe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	Exec struct {
		Command []string `yaml:"command"`
	} `yaml:"exec"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

// TestDeployKubernetes: the DaemonSet runs on the host's network with
// NET_ADMIN and BPF only, keeps its state on the node, mounts a configuration
// that `pptpgw run` parses, and its probe and arguments are valid.
func TestDeployKubernetes(t *testing.T) {
	path := deployPath("k8s", "pptpgw.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	byKind := map[string]k8sObject{}
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
			t.Errorf("%s: object without apiVersion, kind or name: %+v", path, o.Metadata)
		}
		byKind[o.Kind] = o
	}
	for kind, api := range map[string]string{"Namespace": "v1", "ConfigMap": "v1", "DaemonSet": "apps/v1"} {
		if byKind[kind].APIVersion != api {
			t.Errorf("%s: %s apiVersion %q, want %q", path, kind, byKind[kind].APIVersion, api)
		}
	}
	ns := byKind["Namespace"].Metadata.Name
	ds, cm := byKind["DaemonSet"], byKind["ConfigMap"]
	if ds.Spec == nil {
		t.Fatalf("%s: DaemonSet without spec", path)
	}
	if ds.Metadata.Namespace != ns || cm.Metadata.Namespace != ns {
		t.Errorf("namespaces: DaemonSet %q, ConfigMap %q, want %q", ds.Metadata.Namespace, cm.Metadata.Namespace, ns)
	}
	spec := ds.Spec
	for k, v := range spec.Selector.MatchLabels {
		if spec.Template.Metadata.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	if len(spec.Selector.MatchLabels) == 0 {
		t.Error("empty selector")
	}
	pod := spec.Template.Spec
	if !pod.HostNetwork || pod.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Errorf("hostNetwork %v dnsPolicy %q: the gateway must work on the node's network", pod.HostNetwork, pod.DNSPolicy)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc.Privileged || sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Add, []string{"NET_ADMIN", "BPF"}) ||
		!slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("securityContext %+v: want unprivileged, all capabilities dropped but NET_ADMIN and BPF", sc)
	}
	volumes := map[string]int{}
	for i, v := range pod.Volumes {
		volumes[v.Name] = i
		if (v.ConfigMap != nil) == (v.HostPath != nil) == (v.EmptyDir == nil) {
			t.Errorf("volume %s: want exactly one source", v.Name)
		}
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("volumeMount %s: no such volume", m.Name)
		}
		mounts[m.MountPath] = m.Name
	}
	state := pod.Volumes[volumes[mounts["/var/lib/pptpgw"]]]
	if state.HostPath == nil || state.HostPath.Path != "/var/lib/pptpgw" {
		t.Errorf("the state directory must be on the node (hostPath): %+v", state)
	}
	conf := pod.Volumes[volumes[mounts["/etc/pptpgw"]]]
	if conf.ConfigMap == nil || conf.ConfigMap.Name != cm.Metadata.Name {
		t.Errorf("/etc/pptpgw must be the ConfigMap %s: %+v", cm.Metadata.Name, conf)
	}
	if _, ok := mounts["/run/pptpgw"]; !ok {
		t.Error("no /run/pptpgw mount for the admin socket")
	}
	if bpffs := pod.Volumes[volumes[mounts["/sys/fs/bpf"]]]; bpffs.HostPath == nil || bpffs.HostPath.Path != "/sys/fs/bpf" {
		t.Errorf("the bpf path's pins must be on the node's bpffs (hostPath /sys/fs/bpf): %+v", bpffs)
	}

	// The ConfigMap's file is what the image's entrypoint passes to
	// `pptpgw run --config`, followed by the container's args.
	file := filepath.Join(t.TempDir(), "pptpgw.yaml")
	if err := os.WriteFile(file, []byte(cm.Data["pptpgw.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(config.CmdRun, append([]string{"--config", file}, c.Args...), nil)
	if err != nil {
		t.Fatalf("the ConfigMap's pptpgw.yaml with args %q: %v", c.Args, err)
	}
	if !strings.HasPrefix(cfg.AdminSocket, "/run/pptpgw/") || !strings.HasPrefix(cfg.StateFile, "/var/lib/pptpgw/") {
		t.Errorf("admin socket %s and state file %s must be on the mounted volumes", cfg.AdminSocket, cfg.StateFile)
	}
	// Liveness restarts only for what a restart cures; readiness is every part.
	for _, p := range []struct {
		name string
		cmd  []string
		live bool
	}{{"liveness", c.LivenessProbe.Exec.Command, true}, {"readiness", c.ReadinessProbe.Exec.Command, false}} {
		if len(p.cmd) < 2 || p.cmd[0] != "/usr/bin/pptpgw" || p.cmd[1] != config.CmdHealth {
			t.Fatalf("%s probe %q: want pptpgw health", p.name, p.cmd)
		}
		pc, err := config.Parse(p.cmd[1], p.cmd[2:], nil)
		if err != nil {
			t.Fatalf("%s probe %q: %v", p.name, p.cmd, err)
		}
		if pc.Live != p.live || pc.AdminSocket != cfg.AdminSocket {
			t.Errorf("%s probe %q: --live %v, socket %s (the daemon's: %s)", p.name, p.cmd, pc.Live, pc.AdminSocket, cfg.AdminSocket)
		}
	}
}

// TestDeployCompose: host network, NET_ADMIN and BPF only, state on a volume.
func TestDeployCompose(t *testing.T) {
	var f struct {
		Services map[string]struct {
			NetworkMode string   `yaml:"network_mode"`
			CapAdd      []string `yaml:"cap_add"`
			CapDrop     []string `yaml:"cap_drop"`
			Privileged  bool     `yaml:"privileged"`
			Volumes     []string `yaml:"volumes"`
			Build       struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
			Environment map[string]string `yaml:"environment"`
			Healthcheck struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile(deployPath("compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	s, ok := f.Services["pptpgw"]
	if !ok {
		t.Fatal("no pptpgw service")
	}
	if s.NetworkMode != "host" || s.Privileged || !slices.Equal(s.CapAdd, []string{"NET_ADMIN", "BPF"}) || !slices.Equal(s.CapDrop, []string{"ALL"}) {
		t.Errorf("want host network and NET_ADMIN and BPF only: %+v", s)
	}
	if !slices.Contains(s.Volumes, "/sys/fs/bpf:/sys/fs/bpf") {
		t.Errorf("volumes %q: the bpf path's pins need the host's /sys/fs/bpf", s.Volumes)
	}
	if filepath.Join("deploy", s.Build.Context, s.Build.Dockerfile) != filepath.Join("deploy", "..", "deploy", "Dockerfile") {
		t.Errorf("build %+v does not point at deploy/Dockerfile", s.Build)
	}
	if !slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasSuffix(v, ":/var/lib/pptpgw") }) {
		t.Errorf("no volume for the state: %q", s.Volumes)
	}
	var env []string
	for k, v := range s.Environment {
		env = append(env, k+"="+v)
	}
	if _, err := config.Parse(config.CmdRun, nil, env); err != nil {
		t.Errorf("environment: %v", err)
	}
	if hc := s.Healthcheck.Test; len(hc) < 3 || hc[0] != "CMD" || hc[1] != "/usr/bin/pptpgw" || hc[2] != config.CmdHealth {
		t.Errorf("healthcheck %q: want pptpgw health", hc)
	} else if _, err := config.Parse(hc[2], hc[3:], nil); err != nil {
		t.Errorf("healthcheck %q: %v", hc, err)
	}
}

// TestDeployDockerfile: the build stage runs deploy/docker-build.sh, the
// image is debian:bookworm-slim with iptables, and its entrypoint installs
// the rules, then runs the daemon with the shipped configuration.
func TestDeployDockerfile(t *testing.T) {
	b, err := os.ReadFile(deployPath("Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(text, -1)
	if len(froms) != 2 || !strings.HasPrefix(froms[0][1], "golang:1.26") || froms[1][1] != "debian:bookworm-slim" {
		t.Errorf("stages %q: want golang:1.26 then debian:bookworm-slim", froms)
	}
	for _, want := range []string{
		"RUN deploy/docker-build.sh /out/pptpgw",
		"apt-get install -y --no-install-recommends iptables",
		"COPY --from=build /out/pptpgw /usr/bin/pptpgw",
		"COPY deploy/pptpgw.yaml /etc/pptpgw/pptpgw.yaml",
		"/usr/bin/pptpgw rules install --config /etc/pptpgw/pptpgw.yaml && exec /usr/bin/pptpgw run --config /etc/pptpgw/pptpgw.yaml",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// TestDeploySystemdCommands: the unit's pptpgw command lines parse.
func TestDeploySystemdCommands(t *testing.T) {
	b, err := os.ReadFile(deployPath("pptpgw.service"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		_, cmd, ok := strings.Cut(line, "=/usr/bin/pptpgw ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		args := strings.Fields(cmd)
		for i, a := range args {
			if a == "/etc/pptpgw/pptpgw.yaml" {
				args[i] = deployPath("pptpgw.yaml")
			}
		}
		if _, err := config.Parse(args[0], args[1:], nil); err != nil {
			t.Errorf("%s: %v", line, err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d pptpgw command lines, want rules install and run", n)
	}
	// The daemon speaks sd_notify (READY=1, WATCHDOG=1 while live).
	for _, want := range []string{"\nType=notify\n", "\nNotifyAccess=main\n", "\nWatchdogSec="} {
		if !strings.Contains(string(b), want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
}

// TestArchitectureSVGInSync: docs/architecture.svg was rendered from the
// current docs/architecture.dot (`make docs` records the source's hash).
func TestArchitectureSVGInSync(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "docs", "architecture.dot"))
	if err != nil {
		t.Fatal(err)
	}
	svg, err := os.ReadFile(filepath.Join("..", "..", "docs", "architecture.svg"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("<!-- source: architecture.dot sha256 %x -->", sha256.Sum256(src))
	if !bytes.Contains(svg, []byte(want)) || !bytes.Contains(svg, []byte("<svg")) {
		t.Errorf("docs/architecture.svg is stale: run make docs (needs graphviz)")
	}
}
