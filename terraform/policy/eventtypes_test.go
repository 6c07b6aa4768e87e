package policy

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gmailwatch/gmailwatch/shared/events"
)

// TestEventTypesMatchTheCode: variables.tf copies the mailbox event types
// a deployment may switch on (events.MessageTypes) into the validation of
// event_types and its message; a type added to or removed from one list
// and not the other fails here.
func TestEventTypesMatchTheCode(t *testing.T) {
	tf, err := os.ReadFile("../variables.tf")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkEventTypes(string(tf), events.MessageTypes); err != nil {
		t.Error(err)
	}
}

// The check itself, on copies that drift: each must fail.
func TestEventTypesCheckCatchesDrift(t *testing.T) {
	tf, err := os.ReadFile("../variables.tf")
	if err != nil {
		t.Fatal(err)
	}
	good := string(tf)
	for name, tc := range map[string]struct {
		tf    string
		types []string
	}{
		"type added in code":      {good, append(slices.Clone(events.MessageTypes), "gmail.message.starred")},
		"type dropped in code":    {good, events.MessageTypes[:len(events.MessageTypes)-1]},
		"type dropped in list":    {strings.Replace(good, `"gmail.message.deleted",`, "", 1), events.MessageTypes},
		"type missing in message": {strings.Replace(good, "and gmail.message.deleted.", "and gmail.message.gone.", 1), events.MessageTypes},
		"no event_types variable": {strings.Replace(good, `variable "event_types"`, `variable "event_kinds"`, 1), events.MessageTypes},
		"list moved to a local":   {regexp.MustCompile(`(?s)contains\(\[.*?\], t\)`).ReplaceAllString(good, "contains(local.message_types, t)"), events.MessageTypes},
	} {
		if err := checkEventTypes(tc.tf, tc.types); err == nil {
			t.Errorf("%s: no difference found", name)
		}
	}
}

var (
	eventTypesBlock = regexp.MustCompile(`(?s)variable "event_types" \{(.*?)\n\}`)
	containsList    = regexp.MustCompile(`(?s)contains\(\[(.*?)\], t\)`)
	quoted          = regexp.MustCompile(`"([^"]+)"`)
	errorMessage    = regexp.MustCompile(`error_message = "([^"]*)"`)
	messageType     = regexp.MustCompile(`gmail\.message\.[a-z_]+`)
)

// checkEventTypes compares the types the event_types validation accepts,
// and those its error message names, with want.
func checkEventTypes(tf string, want []string) error {
	block := eventTypesBlock.FindStringSubmatch(tf)
	if block == nil {
		return fmt.Errorf("variables.tf: no event_types variable")
	}
	list := containsList.FindStringSubmatch(block[1])
	if list == nil {
		return fmt.Errorf("event_types: no contains([...], t) list in its validation")
	}
	var accepted []string
	for _, m := range quoted.FindAllStringSubmatch(list[1], -1) {
		accepted = append(accepted, m[1])
	}
	msg := errorMessage.FindStringSubmatch(block[1])
	if msg == nil {
		return fmt.Errorf("event_types: no error_message")
	}
	named := messageType.FindAllString(msg[1], -1)
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	if !slices.Equal(sorted(accepted), sorted(want)) {
		return fmt.Errorf("event_types accepts %v; shared/events.MessageTypes is %v", accepted, want)
	}
	if !slices.Equal(sorted(named), sorted(want)) {
		return fmt.Errorf("event_types' error message names %v; shared/events.MessageTypes is %v", named, want)
	}
	return nil
}
