package store

import "time"

// CatchUp is the checkpoint of a catch-up in progress: the sync lists the
// mailbox in chunks when Gmail no longer has the history after the cursor,
// and records here, after each chunk it announced, where the next one
// starts, so a crash, a quota refusal or the end of an invocation costs at
// most one chunk, and whichever sync runs next (a push, the reconcile)
// continues it rather than starting over.
type CatchUp struct {
	HistoryID int64     `firestore:"historyId"` // the mailbox's history id when it began: the cursor once done
	Since     time.Time `firestore:"since"`     // mail received before it is not announced
	Pages     []string  `firestore:"pages"`     // per listing (a watched label, then SENT): its next page token, "" before its first
	Done      []bool    `firestore:"done"`      // per listing: finished
	Listed    int       `firestore:"listed"`    // messages listed so far, for the logs
	StartedAt time.Time `firestore:"startedAt"`
}
