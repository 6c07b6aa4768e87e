// Package notify is the Notify function: triggered by every Gmail push on the
// Gmail topic, it decodes {"emailAddress","historyId"} and hands it to the
// sync algorithm, which announces each new message once. Events that are not
// messages of the Gmail topic, malformed pushes and unknown users are logged
// and acknowledged; only failures worth retrying return an error, so Pub/Sub
// redelivers the push.
package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"strconv"
	"strings"

	"github.com/GoogleCloudPlatform/functions-framework-go/functions"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/gmailwatch/gmailwatch/shared/config"
	"github.com/gmailwatch/gmailwatch/shared/events"
	"github.com/gmailwatch/gmailwatch/shared/gmailclient"
	"github.com/gmailwatch/gmailwatch/shared/gmailsync"
	"github.com/gmailwatch/gmailwatch/shared/logging"
	"github.com/gmailwatch/gmailwatch/shared/mailbody"
	"github.com/gmailwatch/gmailwatch/shared/platform"
	"github.com/gmailwatch/gmailwatch/shared/store"
)

func init() { functions.CloudEvent("Notify", platform.CloudEvent(production)) }

// Config is the function's settings.
type Config struct {
	Platform   platform.Settings
	GmailTopic string // GMAIL_TOPIC: the trigger's topic
	Gmail      gmailclient.Settings
	Sync       gmailsync.Settings
	Delegation *gmailclient.Delegation // CONNECT_MODE delegation or both; nil in consent mode
}

// Cloud returns the settings every function shares.
func (c Config) Cloud() platform.Settings { return c.Platform }

// ReadConfig reads the settings, reporting every problem in one error.
func ReadConfig(lookup platform.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{Platform: platform.ReadSettings(r), GmailTopic: gmailclient.ReadTopic(r), Gmail: gmailclient.ReadSettings(r), Sync: gmailsync.ReadSettings(r)}
	c.Sync.Labels, c.Sync.LabelFilter = gmailclient.ReadLabels(r)
	c.Delegation = gmailclient.ReadDelegation(r)
	c.Sync.Types = events.ReadTypes(r)
	c.Sync.Content = mailbody.ReadSettings(r, c.Gmail.Scope)
	return c, r.Err()
}

// Handler syncs the user of each Gmail push.
type Handler struct {
	syncer     *gmailsync.Syncer
	log        *slog.Logger
	project    string
	gmailTopic string // projects/P/topics/T of Gmail's pushes
}

// New returns a Handler for pushes of gmailTopic (projects/P/topics/T).
func New(syncer *gmailsync.Syncer, project, gmailTopic string, log *slog.Logger) *Handler {
	return &Handler{syncer: syncer, log: log, project: project, gmailTopic: gmailTopic}
}

// production is the deployed handler, built from the environment at the
// first push. If that fails every push returns the error, so Pub/Sub keeps
// the pushes until the configuration is fixed.
var production = platform.Production("notify", ReadConfig, wire)

// wire builds the handler over the deployed clients.
func wire(cfg Config, c *platform.Clients) *Handler {
	log := logging.New(os.Stdout, slog.LevelInfo)
	users := store.New(c.Firestore(), nil)
	mailboxes := gmailclient.NewFactory(cfg.Gmail, c.Vault())
	if cfg.Delegation != nil {
		mailboxes.Delegate(cfg.Delegation)
	}
	syncer := gmailsync.New(gmailsync.Deps{
		Users:  users,
		Gmail:  mailboxes,
		Events: c.Events(),
		Logger: log,
	}, cfg.Sync)
	return New(syncer, cfg.Platform.ProjectID, cfg.GmailTopic, log)
}

// Handle decodes one push and syncs its user. It returns an error only when
// the push is worth redelivering.
func (h *Handler) Handle(ctx context.Context, e event.Event) error {
	ctx = platform.TraceEvent(ctx, h.project, e)
	// Gmail's pushes come with this type and source, from Eventarc or, in
	// local runs, the framework's push conversion. Anything else is forged or
	// misrouted, and a push in it is not Gmail's word.
	if !platform.IsMessageOf(e, h.gmailTopic) {
		h.log.ErrorContext(ctx, "push ignored", "reason", "not a message of GMAIL_TOPIC",
			"type", clip(e.Type()), "source", clip(e.Source()), "eventId", clip(e.ID()))
		return nil
	}
	p, err := decodePush(e.Data())
	if err != nil {
		h.log.WarnContext(ctx, "push ignored", "reason", err.Error(), "eventId", e.ID(), "bytes", len(e.Data()))
		return nil
	}
	res, err := h.syncer.OnPush(ctx, p.EmailAddress, p.HistoryID)
	if err != nil {
		return fmt.Errorf("push for user %s at history %d: %w", res.User, p.HistoryID, err)
	}
	if res.Outcome == gmailsync.Unknown {
		h.log.WarnContext(ctx, "push ignored", "reason", "no such user; kept until a mailbox's profile shows its address", "historyId", p.HistoryID, "eventId", e.ID())
	}
	return nil
}

// MaxPushBytes caps a push body; Gmail's are about 200 bytes.
const MaxPushBytes = 64 << 10

// push is Gmail's notification.
type push struct {
	EmailAddress string
	HistoryID    int64
}

// decodePush reads the Pub/Sub envelope {"message":{"data":base64,...},
// "subscription":...} and the Gmail notification inside it. historyId may be
// a JSON number or a decimal string. Errors name what is wrong, never the
// address or the body.
func decodePush(body []byte) (push, error) {
	if len(body) > MaxPushBytes {
		return push{}, fmt.Errorf("body of %d bytes is over %d", len(body), MaxPushBytes)
	}
	var envelope struct {
		Message *struct {
			Data []byte `json:"data"` // base64 in JSON
		} `json:"message"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		return push{}, fmt.Errorf("pub/sub envelope: %s", jsonProblem(err))
	}
	if envelope.Message == nil || len(envelope.Message.Data) == 0 {
		return push{}, errors.New("pub/sub envelope: no message data")
	}
	var n struct {
		EmailAddress *string         `json:"emailAddress"`
		HistoryID    json.RawMessage `json:"historyId"`
	}
	if err := json.Unmarshal(envelope.Message.Data, &n); err != nil {
		return push{}, fmt.Errorf("gmail notification: %s", jsonProblem(err))
	}
	if n.EmailAddress == nil {
		return push{}, errors.New("gmail notification: emailAddress missing")
	}
	addr, err := mail.ParseAddress(*n.EmailAddress)
	if err != nil || addr.Name != "" || addr.Address != strings.TrimSpace(*n.EmailAddress) {
		return push{}, errors.New("gmail notification: emailAddress is not an address")
	}
	if len(n.HistoryID) == 0 || string(n.HistoryID) == "null" {
		return push{}, errors.New("gmail notification: historyId missing")
	}
	digits := string(n.HistoryID)
	if strings.HasPrefix(digits, `"`) {
		if err := json.Unmarshal(n.HistoryID, &digits); err != nil {
			return push{}, errors.New("gmail notification: historyId is not a string or number")
		}
	}
	id, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || id <= 0 || digits[0] == '+' {
		return push{}, errors.New("gmail notification: historyId is not a positive whole number")
	}
	return push{EmailAddress: addr.Address, HistoryID: id}, nil
}

// clip shortens a value from the request before it is logged.
func clip(s string) string {
	if len(s) > 128 {
		return s[:128]
	}
	return s
}

// jsonProblem describes a JSON error without quoting the input.
func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var b64 base64.CorruptInputError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("not JSON (offset %d)", syntax.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("%s is a JSON %s, want %s", typ.Field, typ.Value, typ.Type)
	case errors.As(err, &b64):
		return fmt.Sprintf("message data is not base64 (byte %d)", int64(b64))
	}
	return "malformed JSON"
}
