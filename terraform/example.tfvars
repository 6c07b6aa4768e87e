# Example variables: copy to terraform.tfvars and replace the values.
# scripts/tf-check.sh plans with this file, so every optional part is on.

project_id      = "gmailwatch-demo"
project_number  = "123456789012"
region          = "us-central1"
oauth_client_id = "123456789012-abcdefghijklmnopqrstuvwxyz012345.apps.googleusercontent.com"

# Optional: deliver events to an HTTPS endpoint, signed (Standard Webhooks).
webhook_url = "https://hooks.example.com/gmail"

# Embedding in an application: who may call the accounts API, and where
# connect links may send the browser back to.
accounts_invokers = ["serviceAccount:backend@gmailwatch-demo.iam.gserviceaccount.com"]
return_origins    = ["https://app.example.com"]

# Optional: who may connect on the plain consent URL, without a link.
allowed_domains = ["example.com"]

# Optional: also watch a Google Workspace domain's mailboxes through
# domain-wide delegation, beside consent ("delegation": the domain only).
connect_mode        = "both"
delegation_domain   = "example.com"
delegation_admin    = "admin@example.com"
delegation_org_unit = "/Support"

# Optional: who is emailed when an alert fires.
alert_emails = ["oncall@example.com"]

# Defaults, shown for reference:
# gmail_scope        = "https://www.googleapis.com/auth/gmail.metadata"
# gmail_quota_profile = "standard-2026" # legacy for projects that used the Gmail API before May 2026
# gmail_labels       = ["INBOX"]
# gmail_label_filter = "include"
# event_types        = ["gmail.message.received"] # add gmail.message.sent, .labels_changed, .deleted for the whole mailbox
# renew_schedule     = "0 * * * *"
