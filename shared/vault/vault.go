// Package vault keeps secrets in Secret Manager: each user's Gmail refresh
// token as its own secret gmail-refresh-<userKey>, and the system's own keys
// (OAuth client secret, state-signing key, webhook secret). Secret values never
// appear in the errors it returns.
package vault

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"time"

	secretmanager "cloud.google.com/go/secretmanager/apiv1"
	"cloud.google.com/go/secretmanager/apiv1/secretmanagerpb"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/googleapis/gax-go/v2"
)

// RefreshPrefix starts the id of every per-user refresh-token secret; IAM
// conditions grant the functions access to this prefix only.
const RefreshPrefix = "gmail-refresh-"

// ErrNotFound means the secret, or an accessible version of it, does not exist.
var ErrNotFound = errors.New("secret not found")

// Vault reads and writes secrets of one project.
type Vault struct {
	client  *secretmanager.Client
	project string
}

// New connects to Secret Manager. A non-empty endpoint (host:port on
// loopback, as in local runs) is dialled without TLS or credentials.
func New(ctx context.Context, projectID, endpoint string) (*Vault, error) {
	var opts []option.ClientOption
	if endpoint != "" {
		host, _, err := net.SplitHostPort(endpoint)
		if err != nil || !config.IsLoopback(host) {
			return nil, fmt.Errorf("secret manager endpoint %q: only loopback endpoints may be plaintext", endpoint)
		}
		opts = append(opts, option.WithEndpoint(endpoint), option.WithoutAuthentication(),
			option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	}
	c, err := secretmanager.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("secret manager client: %w", err)
	}
	return &Vault{client: c, project: projectID}, nil
}

// Close releases the connection.
func (v *Vault) Close() error { return v.client.Close() }

func (v *Vault) secretName(id string) string { return "projects/" + v.project + "/secrets/" + id }

// Access returns the latest version of secret id.
func (v *Vault) Access(ctx context.Context, id string) ([]byte, error) {
	resp, err := v.client.AccessSecretVersion(ctx, &secretmanagerpb.AccessSecretVersionRequest{
		Name: v.secretName(id) + "/versions/latest",
	})
	if err != nil {
		return nil, classify("access secret "+id, err)
	}
	data := resp.GetPayload().GetData()
	if sum := resp.GetPayload().DataCrc32C; sum != nil && int64(crc32.Checksum(data, castagnoli)) != *sum {
		return nil, fmt.Errorf("access secret %s: checksum mismatch", id)
	}
	return data, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RefreshToken returns the stored refresh token of a user.
func (v *Vault) RefreshToken(ctx context.Context, userKey string) (string, error) {
	b, err := v.Access(ctx, RefreshPrefix+userKey)
	return string(b), err
}

// PutRefreshToken stores token as the newest version of the user's secret,
// creating the secret on first connect, and destroys every older version so
// a superseded token cannot be read back.
func (v *Vault) PutRefreshToken(ctx context.Context, userKey, token string) error {
	id := RefreshPrefix + userKey
	_, err := v.client.CreateSecret(ctx, &secretmanagerpb.CreateSecretRequest{
		Parent:   "projects/" + v.project,
		SecretId: id,
		Secret: &secretmanagerpb.Secret{
			Replication: &secretmanagerpb.Replication{Replication: &secretmanagerpb.Replication_Automatic_{Automatic: &secretmanagerpb.Replication_Automatic{}}},
			Labels:      map[string]string{"kind": "gmail-refresh-token"},
		},
	}, rateRetry)
	if err != nil && status.Code(err) != codes.AlreadyExists {
		return classify("create secret "+id, err)
	}
	data := []byte(token)
	sum := int64(crc32.Checksum(data, castagnoli))
	added, err := v.client.AddSecretVersion(ctx, &secretmanagerpb.AddSecretVersionRequest{
		Parent:  v.secretName(id),
		Payload: &secretmanagerpb.SecretPayload{Data: data, DataCrc32C: &sum},
	}, rateRetry)
	if err != nil {
		return classify("add version to "+id, err)
	}
	it := v.client.ListSecretVersions(ctx, &secretmanagerpb.ListSecretVersionsRequest{Parent: v.secretName(id)}, rateRetry)
	for {
		ver, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return classify("list versions of "+id, err)
		}
		if ver.GetName() == added.GetName() || ver.GetState() == secretmanagerpb.SecretVersion_DESTROYED {
			continue
		}
		_, err = v.client.DestroySecretVersion(ctx, &secretmanagerpb.DestroySecretVersionRequest{Name: ver.GetName()}, rateRetry)
		if err != nil && status.Code(err) != codes.NotFound && status.Code(err) != codes.FailedPrecondition {
			return classify("destroy old version of "+id, err)
		}
	}
}

// DeleteRefreshToken deletes the user's secret with all its versions. A
// secret that does not exist is not an error.
func (v *Vault) DeleteRefreshToken(ctx context.Context, userKey string) error {
	id := RefreshPrefix + userKey
	err := v.client.DeleteSecret(ctx, &secretmanagerpb.DeleteSecretRequest{Name: v.secretName(id)}, rateRetry)
	if err != nil && status.Code(err) != codes.NotFound {
		return classify("delete secret "+id, err)
	}
	return nil
}

// rateRetry waits out Secret Manager's rate quotas, which it answers with
// RESOURCE_EXHAUSTED: per secret, AddSecretVersion 2 a second and 120 a
// minute, so a user who reconnects in quick succession still gets the
// newest token stored; per project, 600 write and 600 read requests a
// minute (its quotas page), so connects above that rate wait for the next
// minute's quota, up to the caller's deadline, instead of failing the
// user's consent. The backoff is jittered (gax), so refused writes do not
// all come back at once.
var rateRetry = gax.WithRetry(func() gax.Retryer {
	return gax.OnCodes([]codes.Code{codes.ResourceExhausted}, gax.Backoff{Initial: 500 * time.Millisecond, Max: 8 * time.Second, Multiplier: 2})
})

// classify wraps a Secret Manager error with its operation; NotFound and an
// inaccessible (destroyed or disabled) version both read as ErrNotFound.
func classify(op string, err error) error {
	switch status.Code(err) {
	case codes.NotFound, codes.FailedPrecondition:
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", op, err)
}
