package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
)

// Cost is what the system spent on a phase's messages, counted: the
// Firestore operations notify's store made (each push's log line carries
// its count), notify's invocations and CPU time, and the events published
// with their bytes (data and attributes, as Pub/Sub bills them) as the
// output topic's subscriber received them.
type Cost struct {
	Invocations           int64   `json:"invocations"` // pushes notify handled, copies and redeliveries included
	FirestoreReads        int64   `json:"firestoreReads"`
	FirestoreWrites       int64   `json:"firestoreWrites"`
	FirestoreTransactions int64   `json:"firestoreTransactions"`
	Published             int64   `json:"published"`
	PublishedBytes        int64   `json:"publishedBytes"`
	CPUSeconds            float64 `json:"notifyCpuSeconds"`
	// BusySeconds is the invocations' durations summed: what Cloud Run
	// bills an instance that serves one request at a time for.
	BusySeconds float64 `json:"notifyBusySeconds"`
	// FirestorePerMessage is reads plus writes per announced message.
	FirestorePerMessage float64 `json:"firestoreOpsPerMessage"`
}

// costMark is where a phase began in notify's log, CPU and the event log.
type costMark struct {
	logAt            int64
	cpu              float64
	published, bytes int64
}

func (b *bench) costMark(log *eventLog) costMark {
	m := costMark{cpu: cpuSeconds(b.st.PID("notify"))}
	if fi, err := os.Stat(b.notifyLog()); err == nil {
		m.logAt = fi.Size()
	}
	m.published, m.bytes = log.volume()
	return m
}

func (b *bench) notifyLog() string { return filepath.Join(b.st.Logs, "notify.log") }

// costSince counts what was spent since m, for announced messages.
func (b *bench) costSince(m costMark, log *eventLog, announced int) Cost {
	c := Cost{CPUSeconds: round2(cpuSeconds(b.st.PID("notify")) - m.cpu)}
	c.Published, c.PublishedBytes = log.volume()
	c.Published, c.PublishedBytes = c.Published-m.published, c.PublishedBytes-m.bytes
	f, err := os.Open(b.notifyLog())
	if err != nil {
		return c
	}
	defer f.Close()
	if _, err := f.Seek(m.logAt, 0); err != nil {
		return c
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"firestoreReads"`)) {
			continue
		}
		var l struct {
			Reads  int64 `json:"firestoreReads"`
			Writes int64 `json:"firestoreWrites"`
			Txs    int64 `json:"firestoreTransactions"`
			Ms     int64 `json:"durationMs"`
		}
		if json.Unmarshal(line, &l) != nil {
			continue
		}
		c.Invocations++
		c.FirestoreReads += l.Reads
		c.FirestoreWrites += l.Writes
		c.FirestoreTransactions += l.Txs
		c.BusySeconds += float64(l.Ms) / 1000
	}
	c.BusySeconds = round2(c.BusySeconds)
	if announced > 0 {
		c.FirestorePerMessage = round2(float64(c.FirestoreReads+c.FirestoreWrites) / float64(announced))
	}
	return c
}
