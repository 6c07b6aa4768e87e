package policy

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

const modulePath = "github.com/gmailwatch/gmailwatch"

// buildpackMain is the main package the Go buildpack writes next to an
// upload whose root package imports the framework's functions package (the
// "declarative" template of GoogleCloudPlatform/buildpacks,
// cmd/go/functions_framework), at functions.local/app/main.go.
const buildpackMain = `// Binary main file implements an HTTP server that loads and runs user's code
// on incoming HTTP requests.
package main

import (
	"log"
	"net/http"
	"os"

	_ "` + modulePath + `"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
)

func main() {
	http.HandleFunc("/robots.txt", http.NotFound)
	http.HandleFunc("/favicon.ico", http.NotFound)

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		log.Fatalf("Function failed to start: %v\n", err)
	}
}
`

var deployed = []struct{ name, entryPoint string }{
	{"consent", "Consent"},
	{"notify", "Notify"},
	{"renew", "Renew"},
	{"webhook", "Webhook"},
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}

// keep applies the upload's exclusions, the same as terraform/functions.tf.
func keep(rel string) bool {
	return !strings.HasSuffix(rel, "_test.go") && !strings.Contains("/"+rel, "/testdata/")
}

func hasGoCode(dir string) bool {
	found := false
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			found = true
		}
		return nil
	})
	return found
}

// assemble returns the files of a function's upload as terraform/functions.tf
// builds them: go.mod, go.sum, the function's package tree, shared/ and the
// generated root file.
func assemble(t *testing.T, root, name string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	add := func(rel string) {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		files[rel] = data
	}
	add("go.mod")
	add("go.sum")
	for _, dir := range []string{"functions/" + name, "shared"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			if rel = filepath.ToSlash(rel); keep(rel) {
				add(rel)
			}
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	tmpl, err := os.ReadFile(filepath.Join(root, "terraform", "function.go.tftpl"))
	if err != nil {
		t.Fatal(err)
	}
	files["function.go"] = bytes.ReplaceAll(tmpl, []byte("${function_package}"), []byte(modulePath+"/functions/"+name))
	return files
}

// plannedArchives maps function name to the zip archive_file wrote while
// planning, when TF_PLAN_JSON names a plan.
func plannedArchives(t *testing.T) map[string]string {
	t.Helper()
	if os.Getenv(planEnv) == "" {
		return nil
	}
	out := map[string]string{}
	for _, r := range realPlan(t).data {
		if r.Type == "archive_file" {
			out[strings.TrimSuffix(path.Base(str(r.Values, "output_path")), ".zip")] = str(r.Values, "output_path")
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s names a plan without archive_file data sources", planEnv)
	}
	return out
}

func unzip(t *testing.T, name string) map[string][]byte {
	t.Helper()
	r, err := zip.OpenReader(name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	files := map[string][]byte{}
	for _, f := range r.File {
		if !fs.ValidPath(f.Name) {
			t.Fatalf("%s: unsafe entry name %q", name, f.Name)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		files[f.Name] = data
	}
	return files
}

func names(files map[string][]byte) []string {
	var out []string
	for n := range files {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start runs the built function server as Cloud Run would, but with an
// invalid PORT: it registers the target, then fails to listen, so nothing
// binds a socket and the output tells whether the target was found.
func start(t *testing.T, bin, target string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), "FUNCTION_TARGET="+target, "PORT=-1", "K_SERVICE=packaging-test")
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// TestPackagedFunctionsBuild builds each function's upload the way the Go
// buildpack does and checks that the entry point Terraform names is
// registered. A function not written yet is skipped, unless
// PACKAGING_REQUIRE_ALL is set (scripts/deploy.sh sets it).
func TestPackagedFunctionsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every function: skipped with -short")
	}
	root := repoRoot(t)
	archives := plannedArchives(t)
	for _, fn := range deployed {
		t.Run(fn.name, func(t *testing.T) {
			if !hasGoCode(filepath.Join(root, "functions", fn.name)) {
				if os.Getenv("PACKAGING_REQUIRE_ALL") != "" {
					t.Fatalf("functions/%s has no Go code: it cannot be deployed", fn.name)
				}
				t.Skipf("functions/%s has no Go code yet: nothing to package", fn.name)
			}
			files := assemble(t, root, fn.name)
			if zipPath, ok := archives[fn.name]; ok {
				planned := unzip(t, zipPath)
				if got, want := strings.Join(names(planned), "\n"), strings.Join(names(files), "\n"); got != want {
					t.Fatalf("%s holds\n%s\nwant the assembled set\n%s", zipPath, got, want)
				}
				for n, data := range files {
					if !bytes.Equal(planned[n], data) {
						t.Errorf("%s: %s differs from the repository's", zipPath, n)
					}
				}
				files = planned
			} else if archives != nil {
				t.Fatalf("the plan has no archive for %s: is webhook_url set in the example variables?", fn.name)
			}

			dir := t.TempDir()
			for n, data := range files {
				p := filepath.Join(dir, filepath.FromSlash(n))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			app := filepath.Join(dir, "functions.local", "app")
			if err := os.MkdirAll(app, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(buildpackMain), 0o644); err != nil {
				t.Fatal(err)
			}

			env := []string{"GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local"}
			if out := run(t, dir, env, "gofmt", "-l", "function.go"); out != "" {
				t.Errorf("generated function.go is not gofmt-clean:\n%s", files["function.go"])
			}
			run(t, dir, env, "go", "mod", "tidy")
			bin := filepath.Join(t.TempDir(), "server")
			run(t, dir, env, "go", "build", "-o", bin, "./functions.local/app")

			if out := start(t, bin, fn.entryPoint); !strings.Contains(out, "invalid port") {
				t.Errorf("FUNCTION_TARGET=%s: got\n%s\nwant the server to find the target and fail only on the port", fn.entryPoint, out)
			}
			if out := start(t, bin, "NoSuchTarget"); !strings.Contains(out, `no matching function found with name: "NoSuchTarget"`) {
				t.Errorf("FUNCTION_TARGET=NoSuchTarget: got\n%s\nwant no matching function", out)
			}
		})
	}
}
