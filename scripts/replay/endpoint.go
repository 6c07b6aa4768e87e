package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/vault"
	"github.com/gmailwatch/gmailwatch/shared/webhooksig"
)

// endpointFlags name one webhook endpoint and where its settings are. The
// defaults are Terraform's names (terraform/main.tf local.webhook_endpoints).
type endpointFlags struct {
	name, prefix, url, urlSecret, secret, since string
	secretEndpoint                              string
}

func (e *endpointFlags) register(fs *flag.FlagSet, env func(string) string) {
	fs.StringVar(&e.name, "endpoint", "", "replay to this webhook endpoint only (its dead letters, or with -since its subscription)")
	fs.StringVar(&e.prefix, "prefix", "gmailwatch-", "Terraform's name_prefix, from which the endpoint's names follow")
	fs.StringVar(&e.url, "url", "", "the endpoint's URL, instead of its URL secret (http on loopback for local runs)")
	fs.StringVar(&e.urlSecret, "url-secret", "", "secret holding the endpoint's URL (default Terraform's name)")
	fs.StringVar(&e.secret, "secret", "", "secret holding the endpoint's whsec_ signing keys (default Terraform's name)")
	fs.StringVar(&e.since, "since", "", "RFC 3339 time: deliver everything published to the endpoint since then again")
	e.secretEndpoint = env("SECRETMANAGER_ENDPOINT")
}

// names returns Terraform's names of the endpoint's dead-letter
// subscription, URL secret, signing secret and subscription.
func (e endpointFlags) names() (deadLetter, urlSecret, secret, subscription string) {
	if e.name == "default" {
		deadLetter, urlSecret, secret, subscription = e.prefix+"events-dead-letter", e.prefix+"webhook-url", e.prefix+"webhook-signing-secret", e.prefix+"webhook"
	} else {
		base := e.prefix + "webhook-" + e.name
		deadLetter, urlSecret, secret, subscription = base+"-dead-letter", base+"-url", base+"-signing-secret", base
	}
	if e.urlSecret != "" {
		urlSecret = e.urlSecret
	}
	if e.secret != "" {
		secret = e.secret
	}
	return
}

func runEndpoint(ctx context.Context, project, subscription, reason string, limit int, idle time.Duration, ep endpointFlags, stdout io.Writer) error {
	deadLetter, urlSecret, secretName, endpointSub := ep.names()
	var problems []error
	if project == "" {
		problems = append(problems, errors.New("-project is required"))
	}
	var since time.Time
	if ep.since != "" {
		var err error
		if since, err = time.Parse(time.RFC3339, ep.since); err != nil {
			problems = append(problems, errors.New("-since must be an RFC 3339 time such as 2026-12-07T10:00:00Z"))
		} else if since.After(time.Now()) {
			problems = append(problems, errors.New("-since is in the future"))
		}
		if subscription != "" {
			endpointSub = subscription
		}
	} else if subscription != "" {
		deadLetter = subscription
	}
	if ep.url != "" {
		if err := config.CheckURL(ep.url); err != nil {
			problems = append(problems, fmt.Errorf("-url: %w", err))
		}
	}
	if err := errors.Join(problems...); err != nil {
		return err
	}
	client, err := pubsub.NewClient(ctx, project)
	if err != nil {
		return fmt.Errorf("pubsub client: %w", err)
	}
	defer client.Close()

	if !since.IsZero() {
		name := "projects/" + project + "/subscriptions/" + endpointSub
		if _, err := client.SubscriptionAdminClient.Seek(ctx, &pubsubpb.SeekRequest{Subscription: name,
			Target: &pubsubpb.SeekRequest_Time{Time: timestamppb.New(since)}}); err != nil {
			return fmt.Errorf("seek %s to %s: %w", endpointSub, since.Format(time.RFC3339), err)
		}
		fmt.Fprintf(stdout, "endpoint %s: subscription %s sought to %s; the webhook delivers from there again\n", ep.name, endpointSub, since.Format(time.RFC3339))
		return nil
	}

	v, err := vault.New(ctx, project, ep.secretEndpoint)
	if err != nil {
		return err
	}
	defer v.Close()
	target := ep.url
	if target == "" {
		raw, err := v.Access(ctx, urlSecret)
		if err != nil {
			return fmt.Errorf("endpoint %s URL secret %s: %w", ep.name, urlSecret, err)
		}
		target = strings.TrimSpace(string(raw))
		if err := config.CheckURL(target); err != nil {
			return fmt.Errorf("endpoint %s URL secret %s: %w", ep.name, urlSecret, err)
		}
	}
	raw, err := v.Access(ctx, secretName)
	if err != nil {
		return fmt.Errorf("endpoint %s signing secret %s: %w", ep.name, secretName, err)
	}
	keys, err := webhooksig.Parse(string(raw))
	if err != nil {
		return fmt.Errorf("endpoint %s signing secret %s: %w", ep.name, secretName, err)
	}
	p := &poster{url: target, keys: keys, client: &http.Client{Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	r := &replayer{
		send: p.post,
		subs: client.SubscriptionAdminClient,
		sub:  "projects/" + project + "/subscriptions/" + deadLetter,
		out:  stdout,
		seen: map[string]bool{},
	}
	replayed, left, err := r.replay(ctx, reason, limit, idle)
	fmt.Fprintf(stdout, "endpoint %s: replayed %d, left %d\n", ep.name, replayed, left)
	return err
}

// poster delivers one dead letter as the webhook function does: the
// original body, signed now with the endpoint's current keys, webhook-id the
// event id.
type poster struct {
	url    string
	keys   *webhooksig.Keyring
	client *http.Client
}

func (p *poster) post(ctx context.Context, ev events.Event, m *pubsubpb.PubsubMessage) error {
	header, err := p.keys.Header(ev.ID, time.Now(), m.GetData())
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(m.GetData()))
	if err != nil {
		return errors.New("cannot build a request for the endpoint's URL")
	}
	header.Set("Content-Type", "application/json")
	header.Set("User-Agent", "gmailwatch-webhook/1 (replay)")
	req.Header = header
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry a token
		}
		return fmt.Errorf("post %s (it stays dead-lettered): %w", ev.ID, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post %s: status %d (it stays dead-lettered)", ev.ID, resp.StatusCode)
	}
	return nil
}
