package gmailsync_test

import (
	"fmt"
	"testing"

	"github.com/gmailwatch/gmailwatch/scripts/sandbox/gmailapi"
	"github.com/gmailwatch/gmailwatch/shared/events"
)

// BenchmarkUnitsPerChange reports the Gmail quota units one change of each
// type costs against the strict sandbox, one change per push and ten per
// push: a history read (2) and the look after the push's second (1) per
// push, and a messages.get (5) only for received and sent mail.
//
//	scripts/test.sh -run '^$' -bench UnitsPerChange -benchtime 5x ./shared/gmailsync/
func BenchmarkUnitsPerChange(b *testing.B) {
	for _, typ := range events.MessageTypes {
		for _, batch := range []int{1, 10} {
			b.Run(fmt.Sprintf("%s/%d-per-push", typ, batch), func(b *testing.B) {
				e := newEnv(b, withTypes(typ))
				email := fmt.Sprintf("cost%d@example.com", batch)
				e.connect(email, nil, "")
				// The messages the label changes and deletions act on, already announced.
				var targets []gmailapi.Delivered
				for range b.N * batch {
					targets = append(targets, e.deliver(email, "target"))
				}
				e.push(email, targets[len(targets)-1].HistoryID)
				e.sb.Gmail.ResetUsage()
				changes := 0
				b.ResetTimer()
				for i := range b.N {
					var h uint64
					for j := range batch {
						d := targets[i*batch+j]
						switch typ {
						case events.MessageReceived:
							h = e.deliver(email, "new").HistoryID
						case events.MessageSent:
							_, sent := e.send(email, "out")
							h = sent.HistoryID
						case events.MessageLabelsChanged:
							h = e.modify(email, d, nil, []string{"UNREAD"})
						case events.MessageDeleted:
							h = e.remove(email, d)
						}
						changes++
					}
					e.push(email, h)
				}
				b.StopTimer()
				u := e.sb.Gmail.Usage(email)
				b.ReportMetric(float64(u.Units)/float64(changes), "units/change")
				b.ReportMetric(float64(u.Calls["messages.get"])/float64(changes), "gets/change")
			})
		}
	}
}
