// Package secrets is the sandbox's Secret Manager: an in-memory gRPC server
// for the subset of google.cloud.secretmanager.v1 the system uses, with
// Google's resource names, status codes and payload checks, so the real
// cloud.google.com/go/secretmanager client talks to it unchanged.
package secrets

import (
	"context"
	"fmt"
	"hash/crc32"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxPayload is Secret Manager's limit on one version's data.
const maxPayload = 64 << 10

var (
	projectName = regexp.MustCompile(`^projects/[^/]+$`)
	secretID    = regexp.MustCompile(`^[\w-]{1,255}$`)
	secretName  = regexp.MustCompile(`^projects/[^/]+/secrets/[\w-]{1,255}$`)
	versionName = regexp.MustCompile(`^(projects/[^/]+/secrets/[\w-]{1,255})/versions/(latest|[1-9][0-9]{0,9})$`)
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

// Version is the state of one secret version, as tests inspect it.
type Version struct {
	Number int
	State  string // ENABLED, DISABLED or DESTROYED
	Data   []byte // nil once destroyed
}

// Server implements the Secret Manager gRPC service in memory.
type Server struct {
	secretmanagerpb.UnimplementedSecretManagerServiceServer

	mu      sync.Mutex
	now     func() time.Time
	secrets map[string]*secret // by resource name projects/P/secrets/S
	access  map[string]int     // AccessSecretVersion calls answered, by secret name

	projectWrites     map[string]*writeRate // write requests, by project name
	writeCount        map[string]int        // write requests admitted, by project name
	projectWriteLimit int                   // a minute per project; 0: none
}

// ProjectWritesPerMinute is Secret Manager's quota on write requests (any
// call that creates, changes or deletes a secret or a version): 600 a
// minute per project (Secret Manager quotas and limits,
// https://cloud.google.com/secret-manager/quotas, "Quotas on the rate of
// requests").
const ProjectWritesPerMinute = 600

type secret struct {
	meta     *secretmanagerpb.Secret
	versions []*version // versions[i] is number i+1
	writes   writeRate  // AddSecretVersion calls
}

type version struct {
	meta   *secretmanagerpb.SecretVersion
	data   []byte
	crc    int64
	writes writeRate // enable, disable and destroy calls
}

// writeRate enforces Secret Manager's per-resource write limits (its
// quotas page: AddSecretVersion 2 per second and 120 per minute per global
// secret; enable, disable and destroy 1 per second and 60 per minute per
// version), answering RESOURCE_EXHAUSTED as Google's quota errors do.
type writeRate struct{ at []time.Time }

func (w *writeRate) admit(now time.Time, perSecond, perMinute int, what string) error {
	w.at = slices.DeleteFunc(w.at, func(t time.Time) bool { return now.Sub(t) >= time.Minute })
	inSecond := 0
	for _, t := range w.at {
		if now.Sub(t) < time.Second {
			inSecond++
		}
	}
	if inSecond >= perSecond || len(w.at) >= perMinute {
		return status.Errorf(codes.ResourceExhausted,
			"Quota exceeded: %s is limited to %d requests per second and %d per minute.", what, perSecond, perMinute)
	}
	w.at = append(w.at, now)
	return nil
}

// New returns an empty Secret Manager.
func New() *Server {
	return &Server{now: time.Now, secrets: map[string]*secret{}, access: map[string]int{},
		projectWrites: map[string]*writeRate{}, writeCount: map[string]int{}, projectWriteLimit: ProjectWritesPerMinute}
}

// SetClock sets the clock the write-rate limits are measured by.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetProjectWriteLimit sets the write requests a project may make a minute
// (ProjectWritesPerMinute unless set; 0 lifts the quota).
func (s *Server) SetProjectWriteLimit(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.projectWriteLimit = perMinute
}

// Unmetered marks ctx's calls as the sandbox's own seeding, outside the
// project's write quota (Sandbox.PutSecret); only in-process callers can.
func Unmetered(ctx context.Context) context.Context {
	return context.WithValue(ctx, unmeteredKey{}, true)
}

type unmeteredKey struct{}

// admitWrite counts a write request of the project that name (a resource
// name under projects/P) belongs to against its quota; s.mu must be held.
func (s *Server) admitWrite(ctx context.Context, name string) error {
	if ctx.Value(unmeteredKey{}) != nil {
		return nil
	}
	project, _, _ := strings.Cut(strings.TrimPrefix(name, "projects/"), "/")
	if s.projectWriteLimit <= 0 {
		s.writeCount[project]++
		return nil
	}
	w := s.projectWrites[project]
	if w == nil {
		w = &writeRate{}
		s.projectWrites[project] = w
	}
	if err := w.admit(s.now(), s.projectWriteLimit, s.projectWriteLimit, "write requests of project "+project); err != nil {
		return err
	}
	s.writeCount[project]++
	return nil
}

// Writes returns the write requests project (its id) made and had
// admitted, the sandbox's own seeding aside.
func (s *Server) Writes(project string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeCount[project]
}

// Accesses returns how many times the secret projects/P/secrets/S was
// read (AccessSecretVersion answered with its data).
func (s *Server) Accesses(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access[name]
}

// Register adds the service to g.
func (s *Server) Register(g *grpc.Server) {
	secretmanagerpb.RegisterSecretManagerServiceServer(g, s)
}

// Secret returns the versions of the secret with the full resource name
// projects/P/secrets/S, oldest first, and whether the secret exists.
func (s *Server) Secret(name string) ([]Version, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, ok := s.secrets[name]
	if !ok {
		return nil, false
	}
	out := make([]Version, len(sec.versions))
	for i, v := range sec.versions {
		out[i] = Version{Number: i + 1, State: v.meta.State.String(), Data: slices.Clone(v.data)}
	}
	return out, true
}

// CreateSecret creates a secret with no versions.
func (s *Server) CreateSecret(ctx context.Context, req *secretmanagerpb.CreateSecretRequest) (*secretmanagerpb.Secret, error) {
	if !projectName.MatchString(req.GetParent()) {
		return nil, status.Errorf(codes.InvalidArgument, "invalid parent %q: want projects/PROJECT", req.GetParent())
	}
	if !secretID.MatchString(req.GetSecretId()) {
		return nil, status.Errorf(codes.InvalidArgument, "invalid secret_id %q: want 1 to 255 letters, digits, underscores or hyphens", req.GetSecretId())
	}
	if req.GetSecret().GetReplication().GetReplication() == nil {
		return nil, status.Error(codes.InvalidArgument, "Secret.replication is required")
	}
	name := req.GetParent() + "/secrets/" + req.GetSecretId()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.admitWrite(ctx, name); err != nil {
		return nil, err
	}
	if _, ok := s.secrets[name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "Secret [%s] already exists.", name)
	}
	meta := proto.Clone(req.GetSecret()).(*secretmanagerpb.Secret)
	meta.Name = name
	meta.CreateTime = timestamppb.Now()
	meta.Etag = etag(meta.CreateTime.AsTime())
	s.secrets[name] = &secret{meta: meta}
	return proto.Clone(meta).(*secretmanagerpb.Secret), nil
}

// GetSecret returns a secret's metadata.
func (s *Server) GetSecret(_ context.Context, req *secretmanagerpb.GetSecretRequest) (*secretmanagerpb.Secret, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := s.lookup(req.GetName())
	if err != nil {
		return nil, err
	}
	return proto.Clone(sec.meta).(*secretmanagerpb.Secret), nil
}

// DeleteSecret deletes a secret and all its versions.
func (s *Server) DeleteSecret(ctx context.Context, req *secretmanagerpb.DeleteSecretRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.admitWrite(ctx, req.GetName()); err != nil {
		return nil, err
	}
	if _, err := s.lookup(req.GetName()); err != nil {
		return nil, err
	}
	delete(s.secrets, req.GetName())
	return &emptypb.Empty{}, nil
}

// AddSecretVersion stores a new ENABLED version, numbered after the last one.
func (s *Server) AddSecretVersion(ctx context.Context, req *secretmanagerpb.AddSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	data := req.GetPayload().GetData()
	switch {
	case req.GetPayload() == nil:
		return nil, status.Error(codes.InvalidArgument, "Field [payload] is required.")
	case len(data) == 0:
		return nil, status.Error(codes.InvalidArgument, "Secret Payload cannot be empty.")
	case len(data) > maxPayload:
		return nil, status.Errorf(codes.InvalidArgument, "Secret Payload cannot be larger than %d bytes, got %d.", maxPayload, len(data))
	}
	crc := int64(crc32.Checksum(data, castagnoli))
	given := req.GetPayload().DataCrc32C
	if given != nil && *given != crc {
		return nil, status.Error(codes.InvalidArgument, "Checksum mismatch: data_crc32c does not match the payload data.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := s.lookup(req.GetParent())
	if err != nil {
		return nil, err
	}
	if err := sec.writes.admit(s.now(), 2, 120, "AddSecretVersion on secret "+req.GetParent()); err != nil {
		return nil, err
	}
	if err := s.admitWrite(ctx, req.GetParent()); err != nil {
		return nil, err
	}
	now := timestamppb.Now()
	v := &version{
		meta: &secretmanagerpb.SecretVersion{
			Name:                           fmt.Sprintf("%s/versions/%d", req.GetParent(), len(sec.versions)+1),
			CreateTime:                     now,
			State:                          secretmanagerpb.SecretVersion_ENABLED,
			Etag:                           etag(now.AsTime()),
			ClientSpecifiedPayloadChecksum: given != nil,
		},
		data: slices.Clone(data),
		crc:  crc,
	}
	sec.versions = append(sec.versions, v)
	return proto.Clone(v.meta).(*secretmanagerpb.SecretVersion), nil
}

// GetSecretVersion returns a version's metadata; "latest" is the newest version.
func (s *Server) GetSecretVersion(_ context.Context, req *secretmanagerpb.GetSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.version(req.GetName(), true)
	if err != nil {
		return nil, err
	}
	return proto.Clone(v.meta).(*secretmanagerpb.SecretVersion), nil
}

// AccessSecretVersion returns a version's data; "latest" is the newest
// version, as in Google's API, whatever its state.
func (s *Server) AccessSecretVersion(_ context.Context, req *secretmanagerpb.AccessSecretVersionRequest) (*secretmanagerpb.AccessSecretVersionResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.version(req.GetName(), true)
	if err != nil {
		return nil, err
	}
	if v.meta.State != secretmanagerpb.SecretVersion_ENABLED {
		return nil, status.Errorf(codes.FailedPrecondition, "Secret Version [%s] is in %s state.", v.meta.Name, v.meta.State)
	}
	crc := v.crc
	s.access[versionName.FindStringSubmatch(req.GetName())[1]]++
	return &secretmanagerpb.AccessSecretVersionResponse{
		Name:    v.meta.Name,
		Payload: &secretmanagerpb.SecretPayload{Data: slices.Clone(v.data), DataCrc32C: &crc},
	}, nil
}

// DisableSecretVersion makes a version inaccessible, keeping its data.
func (s *Server) DisableSecretVersion(ctx context.Context, req *secretmanagerpb.DisableSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	return s.transition(ctx, req.GetName(), secretmanagerpb.SecretVersion_DISABLED)
}

// EnableSecretVersion makes a disabled version accessible again.
func (s *Server) EnableSecretVersion(ctx context.Context, req *secretmanagerpb.EnableSecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	return s.transition(ctx, req.GetName(), secretmanagerpb.SecretVersion_ENABLED)
}

// DestroySecretVersion discards a version's data for good.
func (s *Server) DestroySecretVersion(ctx context.Context, req *secretmanagerpb.DestroySecretVersionRequest) (*secretmanagerpb.SecretVersion, error) {
	return s.transition(ctx, req.GetName(), secretmanagerpb.SecretVersion_DESTROYED)
}

// ListSecretVersions lists a secret's versions, newest first, without data.
// The only filter understood is "state:STATE".
func (s *Server) ListSecretVersions(_ context.Context, req *secretmanagerpb.ListSecretVersionsRequest) (*secretmanagerpb.ListSecretVersionsResponse, error) {
	var want secretmanagerpb.SecretVersion_State
	if f := req.GetFilter(); f != "" {
		n, ok := secretmanagerpb.SecretVersion_State_value[strings.TrimPrefix(f, "state:")]
		if !ok || !strings.HasPrefix(f, "state:") {
			return nil, status.Errorf(codes.InvalidArgument, "unsupported filter %q: the sandbox understands only state:ENABLED|DISABLED|DESTROYED", f)
		}
		want = secretmanagerpb.SecretVersion_State(n)
	}
	if req.GetPageSize() < 0 {
		return nil, status.Error(codes.InvalidArgument, "page_size must not be negative")
	}
	start := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return nil, status.Errorf(codes.InvalidArgument, "invalid page_token %q", t)
		}
		start = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec, err := s.lookup(req.GetParent())
	if err != nil {
		return nil, err
	}
	var all []*secretmanagerpb.SecretVersion
	for _, v := range slices.Backward(sec.versions) {
		if want == 0 || v.meta.State == want {
			all = append(all, proto.Clone(v.meta).(*secretmanagerpb.SecretVersion))
		}
	}
	size := int(req.GetPageSize())
	if size == 0 || size > 25000 {
		size = 25000
	}
	resp := &secretmanagerpb.ListSecretVersionsResponse{TotalSize: int32(len(all))}
	if start < len(all) {
		end := min(start+size, len(all))
		resp.Versions = all[start:end]
		if end < len(all) {
			resp.NextPageToken = strconv.Itoa(end)
		}
	}
	return resp, nil
}

// transition moves a version to state, refusing to leave DESTROYED.
func (s *Server) transition(ctx context.Context, name string, to secretmanagerpb.SecretVersion_State) (*secretmanagerpb.SecretVersion, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.version(name, false)
	if err != nil {
		return nil, err
	}
	if v.meta.State == secretmanagerpb.SecretVersion_DESTROYED {
		return nil, status.Errorf(codes.FailedPrecondition, "Secret Version [%s] is in DESTROYED state.", v.meta.Name)
	}
	if err := v.writes.admit(s.now(), 1, 60, "changing the state of "+v.meta.Name); err != nil {
		return nil, err
	}
	if err := s.admitWrite(ctx, name); err != nil {
		return nil, err
	}
	now := timestamppb.Now()
	v.meta.State = to
	v.meta.Etag = etag(now.AsTime())
	if to == secretmanagerpb.SecretVersion_DESTROYED {
		v.meta.DestroyTime = now
		v.data = nil
	}
	return proto.Clone(v.meta).(*secretmanagerpb.SecretVersion), nil
}

// lookup finds a secret by resource name; s.mu must be held.
func (s *Server) lookup(name string) (*secret, error) {
	if !secretName.MatchString(name) {
		return nil, status.Errorf(codes.InvalidArgument, "invalid secret name %q: want projects/PROJECT/secrets/SECRET", name)
	}
	sec, ok := s.secrets[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "Secret [%s] not found or has no versions.", name)
	}
	return sec, nil
}

// version finds a version by resource name, resolving "latest" when allowed;
// s.mu must be held.
func (s *Server) version(name string, latestAllowed bool) (*version, error) {
	m := versionName.FindStringSubmatch(name)
	if m == nil || (m[2] == "latest" && !latestAllowed) {
		return nil, status.Errorf(codes.InvalidArgument, "invalid secret version name %q: want projects/PROJECT/secrets/SECRET/versions/NUMBER", name)
	}
	sec, ok := s.secrets[m[1]]
	if !ok || (m[2] == "latest" && len(sec.versions) == 0) {
		return nil, status.Errorf(codes.NotFound, "Secret [%s] not found or has no versions.", m[1])
	}
	if m[2] == "latest" {
		return sec.versions[len(sec.versions)-1], nil
	}
	n, _ := strconv.Atoi(m[2])
	if n > len(sec.versions) {
		return nil, status.Errorf(codes.NotFound, "Secret Version [%s] not found.", name)
	}
	return sec.versions[n-1], nil
}

func etag(t time.Time) string {
	return `"` + strconv.FormatInt(t.UnixMicro(), 36) + `"`
}
