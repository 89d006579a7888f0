package config

import (
	"bytes"
	"encoding/json"
	"image/png"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/hearth-pki/hearth/gateway/internal/testkit"
)

// The add-on folder of the repository, and the add-on linter's schema (testdata/addon-linter
// says where it comes from), relative to this package.
const (
	addonDir        = "../../../addon"
	addonSchemaPath = "testdata/addon-linter/config.schema.json"
)

// addonManifest is the part of addon/config.yaml the consistency checks read.
type addonManifest struct {
	Slug        string         `yaml:"slug"`
	Version     string         `yaml:"version"`
	Arch        []string       `yaml:"arch"`
	IngressPort int            `yaml:"ingress_port"`
	Ports       map[string]int `yaml:"ports"`
	Watchdog    string         `yaml:"watchdog"`
	BackupPre   string         `yaml:"backup_pre"`
	BackupPost  string         `yaml:"backup_post"`
	Options     map[string]any `yaml:"options"`
	Schema      map[string]any `yaml:"schema"`
}

func readAddonFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(addonDir, name))
	if err != nil {
		t.Fatalf("reading the add-on's %s: %v", name, err)
	}
	return data
}

func loadManifest(t *testing.T) (addonManifest, map[string]any) {
	t.Helper()
	data := readAddonFile(t, "config.yaml")
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		t.Fatalf("addon/config.yaml is not YAML: %v", err)
	}
	var m addonManifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("addon/config.yaml: %v", err)
	}
	return m, raw
}

// TestAddonConfigMatchesLinterSchema validates addon/config.yaml against the JSON Schema the
// public add-on linter uses.
func TestAddonConfigMatchesLinterSchema(t *testing.T) {
	schemaData, err := os.ReadFile(addonSchemaPath)
	if err != nil {
		t.Fatal(err)
	}
	schemaDoc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaData))
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("addon-config.schema.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("addon-config.schema.json")
	if err != nil {
		t.Fatalf("compiling the schema: %v", err)
	}

	_, raw := loadManifest(t)
	asJSON, err := json.Marshal(raw)
	if err != nil {
		t.Fatalf("config.yaml as JSON: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(asJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(inst); err != nil {
		t.Errorf("addon/config.yaml does not pass the add-on linter's schema:\n%v", err)
	}
}

func TestAddonManifest(t *testing.T) {
	m, _ := loadManifest(t)
	if m.Slug != "hearth" {
		t.Errorf("slug = %q, want hearth", m.Slug)
	}
	if want := []string{"aarch64", "amd64"}; !slices.Equal(m.Arch, want) {
		t.Errorf("arch = %v, want %v (the only hosts Home Assistant supports)", m.Arch, want)
	}
	if m.IngressPort != AddonIngressPort {
		t.Errorf("ingress_port = %d, want AddonIngressPort %d", m.IngressPort, AddonIngressPort)
	}
	if want := "tcp://[HOST]:[PORT:" + strconv.Itoa(AddonIngressPort) + "]"; m.Watchdog != want {
		t.Errorf("watchdog = %q, want %q", m.Watchdog, want)
	}
	brokerPort := strconv.Itoa(AddonBrokerPort) + "/tcp"
	if len(m.Ports) != 1 {
		t.Errorf("ports = %v, want only the broker's %s", m.Ports, brokerPort)
	}
	host, ok := m.Ports[brokerPort]
	if !ok {
		t.Errorf("ports = %v, want the container's %s (AddonBrokerPort) mapped", m.Ports, brokerPort)
	}
	if host != AddonHostPort {
		t.Errorf("ports maps %s to host port %d, but agents are told to dial AddonHostPort %d", brokerPort, host, AddonHostPort)
	}
	for _, mosquitto := range []int{1883, 1884, 8883, 8884} {
		if host == mosquitto {
			t.Errorf("ports maps %s to host port %d, which the Mosquitto add-on owns", brokerPort, host)
		}
	}
	for _, cmd := range []string{m.BackupPre, m.BackupPost} {
		if !strings.HasPrefix(cmd, "/usr/bin/hearth-gateway backup ") {
			t.Errorf("backup command %q, want /usr/bin/hearth-gateway backup …", cmd)
		}
	}
}

// TestAddonOptionsMatchStruct keeps config.yaml's options and schema, AddonOptions and the
// defaults of LoadAddonOptions in step.
func TestAddonOptionsMatchStruct(t *testing.T) {
	m, _ := loadManifest(t)
	fields := jsonTags(reflect.TypeFor[AddonOptions]())

	schemaKeys := slices.Sorted(maps.Keys(m.Schema))
	if diff := cmp.Diff(slices.Sorted(slices.Values(fields)), schemaKeys); diff != "" {
		t.Errorf("AddonOptions' json tags and config.yaml's schema keys differ (-struct +schema):\n%s", diff)
	}
	for key := range m.Options {
		if _, ok := m.Schema[key]; !ok {
			t.Errorf("option %s has a default but no schema entry", key)
		}
	}
	for key, typ := range m.Schema {
		if _, ok := m.Options[key]; ok {
			continue
		}
		if !strings.HasSuffix(schemaElement(typ), "?") {
			t.Errorf("schema %s: %v has no default in options and is not optional ('?'): the Supervisor would refuse to start", key, typ)
		}
	}

	// The defaults the Supervisor writes to options.json are what LoadAddonOptions gives for
	// an empty file.
	defaults, err := json.Marshal(m.Options)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseAddonOptions(defaults)
	if err != nil {
		t.Fatalf("config.yaml's default options are refused: %v", err)
	}
	want, err := parseAddonOptions([]byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("config.yaml's defaults differ from LoadAddonOptions' (-go +yaml):\n%s", diff)
	}
}

// schemaElement returns the type string of a schema entry (the element type of a list).
func schemaElement(typ any) string {
	if list, ok := typ.([]any); ok && len(list) == 1 {
		typ = list[0]
	}
	s, _ := typ.(string)
	return s
}

// TestAddonSchemaPatternsAgreeWithValidation checks that the UI's pre-check (a match(...)
// schema) never refuses a value LoadAddonOptions accepts, and refuses what is not even
// well-formed. (Range limits, such as at most 365 days, only the hub checks.)
func TestAddonSchemaPatternsAgreeWithValidation(t *testing.T) {
	m, _ := loadManifest(t)
	tests := []struct {
		key       string
		good, bad []string
	}{
		{"leaf_lifetime", []string{"30d", "720h", "1h", "365d", "7d"}, []string{"90m", "0d", "30", "d", "30d ", "1.5d", "-1d"}},
		{"discovery_prefix", []string{"homeassistant", "ha/discovery", "a_b-c"}, []string{"", "home/", "/home", "home/#", "ho me", "a//b", "+"}},
	}
	for _, tt := range tests {
		typ := schemaElement(m.Schema[tt.key])
		inner, ok := strings.CutPrefix(strings.TrimSuffix(typ, "?"), "match(")
		if !ok {
			t.Errorf("schema %s = %q, want a match(...) pattern", tt.key, typ)
			continue
		}
		re, err := regexp.Compile(strings.TrimSuffix(inner, ")"))
		if err != nil {
			t.Errorf("schema %s: %v", tt.key, err)
			continue
		}
		for _, v := range tt.good {
			raw, _ := json.Marshal(map[string]string{tt.key: v})
			if _, err := parseAddonOptions(raw); err != nil {
				t.Errorf("LoadAddonOptions refuses %s %q: %v", tt.key, v, err)
			}
			if !re.MatchString(v) {
				t.Errorf("schema %s refuses %q, which LoadAddonOptions accepts", tt.key, v)
			}
		}
		for _, v := range tt.bad {
			raw, _ := json.Marshal(map[string]string{tt.key: v})
			if _, err := parseAddonOptions(raw); err == nil && v != "" {
				t.Errorf("LoadAddonOptions accepts %s %q", tt.key, v)
			}
			if re.MatchString(v) {
				t.Errorf("schema %s accepts %q", tt.key, v)
			}
		}
	}
}

func TestAddonTranslationsCoverEveryOption(t *testing.T) {
	m, _ := loadManifest(t)
	var tr struct {
		Configuration map[string]struct {
			Name        string `yaml:"name"`
			Description string `yaml:"description"`
		} `yaml:"configuration"`
		Network map[string]string `yaml:"network"`
	}
	if err := yaml.Unmarshal(readAddonFile(t, "translations/en.yaml"), &tr); err != nil {
		t.Fatalf("translations/en.yaml: %v", err)
	}
	for key := range m.Schema {
		entry, ok := tr.Configuration[key]
		if !ok || entry.Name == "" || entry.Description == "" {
			t.Errorf("translations/en.yaml: option %s needs a name and a description", key)
		}
	}
	for key := range tr.Configuration {
		if _, ok := m.Schema[key]; !ok {
			t.Errorf("translations/en.yaml translates %s, which is not an option", key)
		}
	}
	for port := range m.Ports {
		if tr.Network[port] == "" {
			t.Errorf("translations/en.yaml: port %s needs a description under network", port)
		}
	}
}

func TestAddonDockerfileBuildsTheHub(t *testing.T) {
	dockerfile := string(readAddonFile(t, "Dockerfile"))
	var build string
	for line := range strings.SplitSeq(dockerfile, "\n") {
		if strings.Contains(line, "go build") {
			build = line
		}
	}
	for _, want := range []string{"CGO_ENABLED=1", "GOWORK=off", "-trimpath", "./cmd/hearth-gateway", "-o /out/hearth-gateway"} {
		if !strings.Contains(build, want) {
			t.Errorf("Dockerfile go build line %q lacks %q", build, want)
		}
	}
	for _, want := range []string{
		"FROM ${BUILD_FROM}",
		"ARG BUILD_FROM=ghcr.io/home-assistant/",
		"COPY --from=builder /out/hearth-gateway /usr/bin/hearth-gateway",
		"COPY protocol/ protocol/",
		"COPY addon/run.sh /run.sh",
	} {
		if !strings.Contains(dockerfile, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	run := readAddonFile(t, "run.sh")
	if !bytes.Contains(run, []byte("exec /usr/bin/hearth-gateway serve --addon")) {
		t.Errorf("run.sh does not exec the hub: %s", run)
	}
	if fi, err := os.Stat(filepath.Join(addonDir, "run.sh")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("run.sh is not executable: %v", err)
	}
}

func TestAddonImagesAndProfile(t *testing.T) {
	sizes := map[string][2]int{"icon.png": {128, 128}, "logo.png": {250, 100}}
	for name, want := range sizes {
		img, err := png.Decode(bytes.NewReader(readAddonFile(t, name)))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if b := img.Bounds(); b.Dx() != want[0] || b.Dy() != want[1] {
			t.Errorf("%s is %dx%d, want %dx%d", name, b.Dx(), b.Dy(), want[0], want[1])
		}
	}
	profile := string(readAddonFile(t, "apparmor.txt"))
	if !regexp.MustCompile(`(?m)^profile hearth flags=`).MatchString(profile) {
		t.Error("apparmor.txt: the first profile must be named after the slug, hearth")
	}
	for _, doc := range []string{"DOCS.md", "CHANGELOG.md", "repository.yaml"} {
		if len(readAddonFile(t, doc)) == 0 {
			t.Errorf("%s is empty", doc)
		}
	}
}

// TestAddonAppArmorProfileParses compiles apparmor.txt with the real AppArmor parser (Debian
// package apparmor), without loading it into the kernel or touching the cache, so it runs in a
// container without AppArmor too.
func TestAddonAppArmorProfileParses(t *testing.T) {
	parser := testkit.RequirePeer(t, "apparmor_parser")
	out, err := exec.CommandContext(t.Context(), parser, "--skip-kernel-load", "--skip-cache", filepath.Join(addonDir, "apparmor.txt")).CombinedOutput()
	if err != nil {
		t.Errorf("apparmor_parser rejects apparmor.txt: %v\n%s", err, out)
	}
}
