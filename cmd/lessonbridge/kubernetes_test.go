package main

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// No cluster runs here: these tests parse deploy/kubernetes and check it against the binary. The
// Deployment's command line and environment are parsed by run's real flag set and checked by its
// real settings, with the mounted Secret keys as the files; probes, PodDisruptionBudget, Service
// and ServiceMonitor must point at what the Deployment really serves.

const k8sDir = "../../deploy/kubernetes"

type k8sMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type k8sObject struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   k8sMeta        `yaml:"metadata"`
	Spec       yaml.Node      `yaml:"spec"`
	StringData map[string]any `yaml:"stringData"`
	Data       map[string]any `yaml:"data"`
	file       string
}

type k8sProbe struct {
	HTTPGet struct {
		Path string    `yaml:"path"`
		Port yaml.Node `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sContainer struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom any    `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	VolumeMounts   []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sDeploymentSpec struct {
	Replicas int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata k8sMeta `yaml:"metadata"`
		Spec     struct {
			TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
			SecurityContext               struct {
				RunAsNonRoot bool `yaml:"runAsNonRoot"`
				RunAsUser    int  `yaml:"runAsUser"`
			} `yaml:"securityContext"`
			Containers []k8sContainer `yaml:"containers"`
			Volumes    []struct {
				Name   string `yaml:"name"`
				Secret *struct {
					SecretName string `yaml:"secretName"`
				} `yaml:"secret"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

// loadK8s reads the files kustomization.yaml lists (and checks that it lists every manifest).
func loadK8s(t *testing.T) map[string][]k8sObject {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	require.NoError(t, err)
	var kz struct {
		Resources []string `yaml:"resources"`
	}
	require.NoError(t, yaml.Unmarshal(b, &kz))
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	require.NoError(t, err)
	var all []string
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" {
			all = append(all, filepath.Base(f))
		}
	}
	assert.ElementsMatch(t, all, kz.Resources, "kustomization.yaml lists every manifest")

	byKind := map[string][]k8sObject{}
	for _, f := range kz.Resources {
		b, err := os.ReadFile(filepath.Join(k8sDir, f))
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, f)
			require.NotEmpty(t, o.Kind, f)
			require.NotEmpty(t, o.Metadata.Name, f)
			o.file = f
			byKind[o.Kind] = append(byKind[o.Kind], o)
		}
	}
	return byKind
}

func one(t *testing.T, objs map[string][]k8sObject, kind string) k8sObject {
	t.Helper()
	require.Len(t, objs[kind], 1, kind)
	return objs[kind][0]
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// rootedFS serves absolute paths from a MapFS (whose names are unrooted).
type rootedFS struct{ m fstest.MapFS }

func (r rootedFS) ReadFile(name string) ([]byte, error) {
	return r.m.ReadFile(strings.TrimPrefix(name, "/"))
}
func (r rootedFS) Stat(name string) (fs.FileInfo, error) {
	return r.m.Stat(strings.TrimPrefix(name, "/"))
}

func TestKubernetesManifests(t *testing.T) {
	objs := loadK8s(t)
	depObj := one(t, objs, "Deployment")
	assert.Equal(t, "apps/v1", depObj.APIVersion)
	var dep k8sDeploymentSpec
	require.NoError(t, depObj.Spec.Decode(&dep))
	assert.Equal(t, 2, dep.Replicas, "two instances: one pinned, one standby")
	pod := dep.Template
	assert.True(t, subset(dep.Selector.MatchLabels, pod.Metadata.Labels), "the selector matches the pod labels")
	require.Len(t, pod.Spec.Containers, 1)
	c := pod.Spec.Containers[0]

	// The command line and the environment, through run's real flag set.
	sub, _ := checkInvocation(t, "Deployment args", c.Args)
	require.Equal(t, "run", sub)
	clearRunEnv(t)
	known := subcommandFlags(t, "run")
	byEnv := map[string]string{}
	for f := range known {
		byEnv[envName(f)] = f
		for _, e := range runFlagExtraEnv[f] {
			byEnv[e] = f
		}
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" { // the Go runtime's, not run's: a size with a unit
			assert.Regexp(t, `^[0-9]+(B|KiB|MiB|GiB)$`, e.Value, "GOMEMLIMIT")
			continue
		}
		_, ok := byEnv[e.Name]
		assert.True(t, ok, "%s names no flag of run", e.Name)
		assert.Nil(t, e.ValueFrom, "%s: secrets are mounted as files, not put into the environment", e.Name)
		assert.NotContains(t, e.Name, "PASSWORD")
		assert.False(t, strings.HasSuffix(e.Name, "_TOKEN"), "%s: a token belongs in a mounted file", e.Name)
		t.Setenv(e.Name, e.Value)
	}
	fsys := newFlagSet("run", io.Discard)
	flags := registerRunFlags(fsys)
	require.NoError(t, parseFlags(fsys, c.Args[1:], runFlagExtraEnv))

	// The mounted Secret keys are the files the settings read.
	secrets := map[string]k8sObject{}
	for _, s := range objs["Secret"] {
		secrets[s.Metadata.Name] = s
	}
	volumes := map[string]string{} // volume -> secret name
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			volumes[v.Name] = v.Secret.SecretName
		}
	}
	files := fstest.MapFS{}
	for _, m := range c.VolumeMounts {
		name, ok := volumes[m.Name]
		require.True(t, ok, "mount %s: no secret volume", m.Name)
		s, ok := secrets[name]
		require.True(t, ok, "volume %s: no Secret %s in the manifests", m.Name, name)
		for k := range s.StringData {
			files[strings.TrimPrefix(path.Join(m.MountPath, k), "/")] = &fstest.MapFile{Data: []byte("x")}
		}
		for k := range s.Data {
			files[strings.TrimPrefix(path.Join(m.MountPath, k), "/")] = &fstest.MapFile{Data: []byte("x")}
		}
	}
	s, errs := flags.settings(rootedFS{files})
	require.Empty(t, errorTexts(errs), "the Deployment's configuration is one run accepts (with the mounted secrets)")
	assert.NotEmpty(t, s.Bridge.PriorityGroup, "several replicas need --priority-group")
	assert.True(t, s.JobManager.OAuth2 != nil || s.JobManager.TokenFile != "" || s.JobManager.TokenDir != "", "JobManager credentials come from a mounted Secret")
	assert.NotEmpty(t, s.NATS.Creds, "NATS credentials come from a mounted Secret")

	// Ports and probes.
	host, port, err := net.SplitHostPort(s.HTTPAddr)
	require.NoError(t, err)
	assert.Contains(t, []string{"0.0.0.0", "", "::"}, host, "probes reach the pod IP")
	require.Len(t, c.Ports, 1)
	assert.Equal(t, port, strconv.Itoa(c.Ports[0].ContainerPort))
	portName := c.Ports[0].Name
	probePort := func(p *k8sProbe) string {
		v := p.HTTPGet.Port.Value
		if v == portName {
			return port
		}
		return v
	}
	require.NotNil(t, c.LivenessProbe)
	require.NotNil(t, c.ReadinessProbe)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, port, probePort(c.LivenessProbe))
	assert.Equal(t, port, probePort(c.ReadinessProbe))

	// Shutdown and the image's user.
	grace := s.Bridge.ShutdownGrace
	assert.Greater(t, time.Duration(pod.Spec.TerminationGracePeriodSeconds)*time.Second, grace+httpShutdownTimeout,
		"terminationGracePeriodSeconds above --shutdown-grace %v + %v", grace, httpShutdownTimeout)
	df, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	assert.True(t, pod.Spec.SecurityContext.RunAsNonRoot)
	assert.Contains(t, string(df), "USER "+strconv.Itoa(pod.Spec.SecurityContext.RunAsUser)+":", "runAsUser is the image's user")

	// PodDisruptionBudget: keeps one of the replicas.
	pdbObj := one(t, objs, "PodDisruptionBudget")
	assert.Equal(t, "policy/v1", pdbObj.APIVersion)
	var pdb struct {
		MinAvailable int `yaml:"minAvailable"`
		Selector     struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	}
	require.NoError(t, pdbObj.Spec.Decode(&pdb))
	assert.True(t, subset(pdb.Selector.MatchLabels, pod.Metadata.Labels), "the PDB selects the bridge's pods")
	assert.GreaterOrEqual(t, pdb.MinAvailable, 1)
	assert.Less(t, pdb.MinAvailable, dep.Replicas, "a drain can still move one pod")

	// Service and ServiceMonitor: /metrics of the pods' http port.
	svcObj := one(t, objs, "Service")
	var svc struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string    `yaml:"name"`
			Port       int       `yaml:"port"`
			TargetPort yaml.Node `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	require.NoError(t, svcObj.Spec.Decode(&svc))
	assert.True(t, subset(svc.Selector, pod.Metadata.Labels), "the Service selects the bridge's pods")
	require.Len(t, svc.Ports, 1)
	assert.Contains(t, []string{portName, port}, svc.Ports[0].TargetPort.Value)

	smObj := one(t, objs, "ServiceMonitor")
	assert.Equal(t, "monitoring.coreos.com/v1", smObj.APIVersion)
	var sm struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Endpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"endpoints"`
	}
	require.NoError(t, smObj.Spec.Decode(&sm))
	assert.True(t, subset(sm.Selector.MatchLabels, svcObj.Metadata.Labels), "the ServiceMonitor selects the Service")
	require.Len(t, sm.Endpoints, 1)
	assert.Equal(t, svc.Ports[0].Name, sm.Endpoints[0].Port)
	assert.Equal(t, "/metrics", sm.Endpoints[0].Path)
}
