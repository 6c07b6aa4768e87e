package notify

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// envelope wraps data as the functions framework hands a Pub/Sub push to a
// CloudEvent function: {"message":{"@type","data","attributes","messageId","publishTime"}}.
func envelope(data string) []byte {
	return []byte(`{"message":{"@type":"type.googleapis.com/google.pubsub.v1.PubsubMessage","attributes":null,` +
		`"data":"` + base64.StdEncoding.EncodeToString([]byte(data)) + `","messageId":"17","publishTime":"2026-11-26T10:00:00Z"}}`)
}

func TestDecodePush(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		body    []byte
		want    push
		wantErr string // part of the error; "" for success
	}{
		{"history id number", envelope(`{"emailAddress":"user@example.com","historyId":9876543210}`), push{"user@example.com", 9876543210}, ""},
		{"history id string", envelope(`{"emailAddress":"user@example.com","historyId":"1234567"}`), push{"user@example.com", 1234567}, ""},
		// Recorded from Gmail in googleworkspace/python-samples#200.
		{"recorded push", envelope(`{"emailAddress": "xxxxx@xxxxx.com", "historyId": 1710}`), push{"xxxxx@xxxxx.com", 1710}, ""},
		{"extra fields", envelope(`{"emailAddress":"User@Example.com","historyId":5,"x":[1]}`), push{"User@Example.com", 5}, ""},
		{"raw push with subscription", []byte(`{"message":{"data":"` + base64.StdEncoding.EncodeToString([]byte(`{"emailAddress":"a@b.co","historyId":1}`)) + `"},"subscription":"projects/p/subscriptions/s"}`), push{"a@b.co", 1}, ""},
		{"not JSON", []byte("hello"), push{}, "pub/sub envelope: not JSON"},
		{"empty body", nil, push{}, "pub/sub envelope: not JSON"},
		{"no message", []byte(`{"subscription":"s"}`), push{}, "no message data"},
		{"message not an object", []byte(`{"message":"x"}`), push{}, "message is a JSON string"},
		{"no data", []byte(`{"message":{"attributes":{}}}`), push{}, "no message data"},
		{"bad base64", []byte(`{"message":{"data":"!!!not base64"}}`), push{}, "not base64"},
		{"data not JSON", envelope("not json"), push{}, "gmail notification: not JSON"},
		{"data is an array", envelope(`[1,2]`), push{}, "gmail notification"},
		{"email missing", envelope(`{"historyId":5}`), push{}, "emailAddress missing"},
		{"email a number", envelope(`{"emailAddress":5,"historyId":5}`), push{}, "emailAddress is a JSON number"},
		{"email not an address", envelope(`{"emailAddress":"not an address","historyId":5}`), push{}, "not an address"},
		{"email with a name", envelope(`{"emailAddress":"Ann <a@b.co>","historyId":5}`), push{}, "not an address"},
		{"history id missing", envelope(`{"emailAddress":"a@b.co"}`), push{}, "historyId missing"},
		{"history id null", envelope(`{"emailAddress":"a@b.co","historyId":null}`), push{}, "historyId missing"},
		{"history id bool", envelope(`{"emailAddress":"a@b.co","historyId":true}`), push{}, "not a positive whole number"},
		{"history id zero", envelope(`{"emailAddress":"a@b.co","historyId":0}`), push{}, "not a positive whole number"},
		{"history id negative", envelope(`{"emailAddress":"a@b.co","historyId":-3}`), push{}, "not a positive whole number"},
		{"history id fraction", envelope(`{"emailAddress":"a@b.co","historyId":1.5}`), push{}, "not a positive whole number"},
		{"history id exponent", envelope(`{"emailAddress":"a@b.co","historyId":1e6}`), push{}, "not a positive whole number"},
		{"history id too big", envelope(`{"emailAddress":"a@b.co","historyId":99999999999999999999}`), push{}, "not a positive whole number"},
		{"history id signed string", envelope(`{"emailAddress":"a@b.co","historyId":"+5"}`), push{}, "not a positive whole number"},
		{"history id word", envelope(`{"emailAddress":"a@b.co","historyId":"twelve"}`), push{}, "not a positive whole number"},
		{"huge body", envelope(`{"emailAddress":"a@b.co","historyId":5,"pad":"` + strings.Repeat("x", MaxPushBytes) + `"}`), push{}, "is over 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodePush(tc.body)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("decodePush: got error %v, want %+v", err, tc.want)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("decodePush: got %+v, %v; want an error containing %q", got, err, tc.wantErr)
			case got != tc.want:
				t.Fatalf("decodePush: got %+v, want %+v", got, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "@") || strings.Contains(err.Error(), "xxxx")) {
				t.Errorf("error %q quotes the push", err)
			}
		})
	}
}

// FuzzDecodePush checks that no body makes the decoder panic, that its
// errors are short and never quote an address, and that what it accepts is
// a usable push that survives a round trip.
func FuzzDecodePush(f *testing.F) {
	for _, seed := range []string{
		`{"emailAddress":"user@example.com","historyId":9876543210}`,
		`{"emailAddress":"user@example.com","historyId":"1234567"}`,
		`{"emailAddress":" Spaced@Example.com ","historyId":"007"}`,
		`{"emailAddress":"a@b.co","historyId":-1}`,
		`{"emailAddress":"a@b.co","historyId":1e3}`,
		`{"emailAddress":"\u0000@b.co","historyId":1}`,
		`{"emailAddress":"a@b.co","emailAddress":"c@d.co","historyId":2}`,
		`{"emailAddress":5}`,
		`{"emailAddress":"x@y.z","historyId":12345678901234567890123}`,
		`not json`,
		``,
	} {
		f.Add(envelope(seed))
	}
	f.Add([]byte(`{"message":{"data":"%%%"}}`))
	f.Add([]byte(`{"message":null}`))
	f.Add([]byte(`{"message":{"data":"eyJlbWFpbEFkZHJlc3MiOiJhQGIuY28iLCJoaXN0b3J5SWQiOjF9","attributes":{"k":"v"},"messageId":"1"},"subscription":"projects/p/subscriptions/s"}`))
	f.Add([]byte(`{"message":{"data":1234567890123456789012345678901234567890}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodePush(body)
		if err != nil {
			if p != (push{}) {
				t.Fatalf("error %v with a non-empty push %+v", err, p)
			}
			if msg := err.Error(); strings.Contains(msg, "@") || len(msg) > 120 {
				t.Fatalf("error %q quotes the push", msg)
			}
			return
		}
		if p.HistoryID <= 0 || !strings.Contains(p.EmailAddress, "@") || len(body) > MaxPushBytes {
			t.Fatalf("accepted an unusable push %+v from %q", p, body)
		}
		data, _ := json.Marshal(map[string]any{"emailAddress": p.EmailAddress, "historyId": p.HistoryID})
		again, err := decodePush(envelope(string(data)))
		if err != nil || again != p {
			t.Fatalf("round trip of %+v: got %+v, %v", p, again, err)
		}
	})
}
