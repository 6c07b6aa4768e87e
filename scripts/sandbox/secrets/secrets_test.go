package secrets_test

import (
	"bytes"
	"context"
	"hash/crc32"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/secrets"
)

const project = "projects/sandbox-test"

// start serves a fresh Secret Manager on a loopback port and returns it with
// a real client connected to it.
func start(t *testing.T) (*secrets.Server, *secretmanager.Client) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv := secrets.New()
	// Each write a second after the last keeps these tests under the
	// per-secret write rate; rate_test.go tests the rate itself.
	var mu sync.Mutex
	clock := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	srv.SetClock(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	})
	srv.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	c, err := secretmanager.NewClient(context.Background(),
		option.WithEndpoint(lis.Addr().String()),
		option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

func automatic() *secretmanagerpb.Secret {
	return &secretmanagerpb.Secret{Replication: &secretmanagerpb.Replication{
		Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}},
	}}
}

func create(t *testing.T, c *secretmanager.Client, id string) string {
	t.Helper()
	sec, err := c.CreateSecret(context.Background(), &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: id, Secret: automatic()})
	if err != nil {
		t.Fatalf("CreateSecret(%s): %v", id, err)
	}
	return sec.Name
}

func add(t *testing.T, c *secretmanager.Client, parent, data string) *secretmanagerpb.SecretVersion {
	t.Helper()
	v, err := c.AddSecretVersion(context.Background(), &secretmanagerpb.AddSecretVersionRequest{Parent: parent, Payload: &secretmanagerpb.SecretPayload{Data: []byte(data)}})
	if err != nil {
		t.Fatalf("AddSecretVersion(%s): %v", parent, err)
	}
	return v
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

func TestVersionsLifecycle(t *testing.T) {
	ctx := context.Background()
	srv, c := start(t)
	name := create(t, c, "gmail-refresh-abc")
	if name != project+"/secrets/gmail-refresh-abc" {
		t.Fatalf("secret name %q", name)
	}
	got, err := c.GetSecret(ctx, &secretmanagerpb.GetSecretRequest{Name: name})
	if err != nil || got.GetName() != name || got.GetReplication().GetAutomatic() == nil || got.GetCreateTime() == nil {
		t.Fatalf("GetSecret = %v, %v", got, err)
	}

	for i, data := range []string{"1//first", "1//second", "1//third"} {
		v := add(t, c, name, data)
		if want := name + "/versions/" + string(rune('1'+i)); v.Name != want || v.State != secretmanagerpb.SecretVersion_ENABLED {
			t.Fatalf("version %d = %s %v, want %s ENABLED", i+1, v.Name, v.State, want)
		}
	}
	if _, err := c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: name + "/versions/1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DisableSecretVersion(ctx, &secretmanagerpb.DisableSecretVersionRequest{Name: name + "/versions/2"}); err != nil {
		t.Fatal(err)
	}

	access := []struct {
		version  string
		wantName string
		wantData string
		wantCode codes.Code
	}{
		{"latest", name + "/versions/3", "1//third", codes.OK},
		{"3", name + "/versions/3", "1//third", codes.OK},
		{"2", "", "", codes.FailedPrecondition},
		{"1", "", "", codes.FailedPrecondition},
		{"4", "", "", codes.NotFound},
		{"0", "", "", codes.InvalidArgument},
		{"first", "", "", codes.InvalidArgument},
	}
	for _, tc := range access {
		resp, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name + "/versions/" + tc.version})
		wantCode(t, "access "+tc.version, err, tc.wantCode)
		if tc.wantCode != codes.OK {
			continue
		}
		if resp.Name != tc.wantName || string(resp.Payload.Data) != tc.wantData {
			t.Errorf("access %s = %s %q, want %s %q", tc.version, resp.Name, resp.Payload.Data, tc.wantName, tc.wantData)
		}
		if crc := int64(crc32.Checksum(resp.Payload.Data, crc32.MakeTable(crc32.Castagnoli))); resp.Payload.DataCrc32C == nil || *resp.Payload.DataCrc32C != crc {
			t.Errorf("access %s data_crc32c = %v, want %d", tc.version, resp.Payload.DataCrc32C, crc)
		}
	}

	if _, err := c.EnableSecretVersion(ctx, &secretmanagerpb.EnableSecretVersionRequest{Name: name + "/versions/2"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.EnableSecretVersion(ctx, &secretmanagerpb.EnableSecretVersionRequest{Name: name + "/versions/1"})
	wantCode(t, "enable destroyed", err, codes.FailedPrecondition)
	_, err = c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: name + "/versions/1"})
	wantCode(t, "destroy destroyed", err, codes.FailedPrecondition)

	versions, ok := srv.Secret(name)
	want := []secrets.Version{{1, "DESTROYED", nil}, {2, "ENABLED", []byte("1//second")}, {3, "ENABLED", []byte("1//third")}}
	if !ok || len(versions) != len(want) {
		t.Fatalf("Secret(%s) = %v, %v; want %v", name, versions, ok, want)
	}
	for i := range want {
		if versions[i].Number != want[i].Number || versions[i].State != want[i].State || !bytes.Equal(versions[i].Data, want[i].Data) {
			t.Errorf("version %d = %+v, want %+v", i+1, versions[i], want[i])
		}
	}

	// Destroying the newest makes "latest" fail rather than fall back.
	if _, err := c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: name + "/versions/3"}); err != nil {
		t.Fatal(err)
	}
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name + "/versions/latest"})
	wantCode(t, "access latest destroyed", err, codes.FailedPrecondition)

	var listed []string
	it := c.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: name, PageSize: 2})
	for {
		v, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, v.Name[strings.LastIndexByte(v.Name, '/')+1:]+"="+v.State.String())
	}
	if got, want := strings.Join(listed, " "), "3=DESTROYED 2=ENABLED 1=DESTROYED"; got != want {
		t.Errorf("ListSecretVersions = %s, want %s", got, want)
	}
	it = c.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: name, Filter: "state:ENABLED"})
	if v, err := it.Next(); err != nil || v.Name != name+"/versions/2" {
		t.Errorf("ListSecretVersions state:ENABLED first = %v, %v", v, err)
	}

	if err := c.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: name}); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Secret(name); ok {
		t.Error("secret still present after DeleteSecret")
	}
	_, err = c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: name + "/versions/latest"})
	wantCode(t, "access after delete", err, codes.NotFound)

	// A secret created again under the same id starts again from version 1.
	create(t, c, "gmail-refresh-abc")
	if v := add(t, c, name, "1//again"); v.Name != name+"/versions/1" {
		t.Errorf("recreated secret's first version = %s", v.Name)
	}
}

func TestBadRequestsChangeNothing(t *testing.T) {
	ctx := context.Background()
	srv, c := start(t)
	name := create(t, c, "state-key")
	add(t, c, name, "k1")
	good := int64(crc32.Checksum([]byte("k2"), crc32.MakeTable(crc32.Castagnoli)))
	bad := good + 1

	cases := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"create existing", func() error {
			_, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "state-key", Secret: automatic()})
			return err
		}, codes.AlreadyExists},
		{"create bad id", func() error {
			_, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "a/b", Secret: automatic()})
			return err
		}, codes.InvalidArgument},
		{"create id too long", func() error {
			_, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: strings.Repeat("a", 256), Secret: automatic()})
			return err
		}, codes.InvalidArgument},
		{"create empty id", func() error {
			_, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: project, Secret: automatic()})
			return err
		}, codes.InvalidArgument},
		{"create bad parent", func() error {
			_, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: "sandbox-test", SecretId: "x", Secret: automatic()})
			return err
		}, codes.InvalidArgument},
		{"create without replication", func() error {
			_, err := c.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{Parent: project, SecretId: "x", Secret: &secretmanagerpb.Secret{}})
			return err
		}, codes.InvalidArgument},
		{"get unknown", func() error {
			_, err := c.GetSecret(ctx, &secretmanagerpb.GetSecretRequest{Name: project + "/secrets/nope"})
			return err
		}, codes.NotFound},
		{"get bad name", func() error {
			_, err := c.GetSecret(ctx, &secretmanagerpb.GetSecretRequest{Name: "state-key"})
			return err
		}, codes.InvalidArgument},
		{"add to unknown", func() error {
			_, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: project + "/secrets/nope", Payload: &secretmanagerpb.SecretPayload{Data: []byte("x")}})
			return err
		}, codes.NotFound},
		{"add oversize", func() error {
			_, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: name, Payload: &secretmanagerpb.SecretPayload{Data: make([]byte, 64<<10+1)}})
			return err
		}, codes.InvalidArgument},
		{"add without payload", func() error {
			_, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: name})
			return err
		}, codes.InvalidArgument},
		{"add checksum mismatch", func() error {
			_, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: name, Payload: &secretmanagerpb.SecretPayload{Data: []byte("k2"), DataCrc32C: &bad}})
			return err
		}, codes.InvalidArgument},
		{"destroy latest alias", func() error {
			_, err := c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: name + "/versions/latest"})
			return err
		}, codes.InvalidArgument},
		{"destroy unknown version", func() error {
			_, err := c.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: name + "/versions/9"})
			return err
		}, codes.NotFound},
		{"access latest of unknown", func() error {
			_, err := c.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{Name: project + "/secrets/nope/versions/latest"})
			return err
		}, codes.NotFound},
		{"delete unknown", func() error {
			return c.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: project + "/secrets/nope"})
		}, codes.NotFound},
		{"list bad filter", func() error {
			_, err := c.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: name, Filter: "name:x"}).Next()
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.name, tc.call(), tc.want)
			versions, ok := srv.Secret(name)
			if !ok || len(versions) != 1 || versions[0].State != "ENABLED" || string(versions[0].Data) != "k1" {
				t.Errorf("after %s: state %+v, %v; want only version 1 ENABLED k1", tc.name, versions, ok)
			}
			if _, ok := srv.Secret(project + "/secrets/x"); ok {
				t.Errorf("after %s: secret x exists", tc.name)
			}
		})
	}

	// The right checksum is accepted and reported back.
	v, err := c.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{Parent: name, Payload: &secretmanagerpb.SecretPayload{Data: []byte("k2"), DataCrc32C: &good}})
	if err != nil || !v.ClientSpecifiedPayloadChecksum {
		t.Fatalf("add with good checksum = %v, %v", v, err)
	}
	// The largest payload allowed fits.
	add(t, c, name, strings.Repeat("x", 64<<10))
}
