// Command serve runs one of the system's functions locally through the
// functions framework, exactly as the Cloud Functions Go runtime does: the
// function named by FUNCTION_TARGET (Consent, Accounts, Notify, Renew or Webhook)
// serves on 127.0.0.1:$PORT.
package main

import (
	"log"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	_ "github.com/gmailwatch/gmailwatch/functions/accounts"
	_ "github.com/gmailwatch/gmailwatch/functions/consent"
	_ "github.com/gmailwatch/gmailwatch/functions/notify"
	_ "github.com/gmailwatch/gmailwatch/functions/renew"
	_ "github.com/gmailwatch/gmailwatch/functions/webhook"
)

func main() {
	if os.Getenv("FUNCTION_TARGET") == "" {
		log.Fatal("set FUNCTION_TARGET to Consent, Accounts, Notify, Renew or Webhook")
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.StartHostPort("127.0.0.1", port); err != nil {
		log.Fatalf("serve %s: %v", os.Getenv("FUNCTION_TARGET"), err)
	}
}
