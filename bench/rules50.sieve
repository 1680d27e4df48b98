# A realistic personal Sieve script of 50 rules, the one bench/rules.py installs.
#
# Most rules look for mail the benchmark corpus never contains (mailing lists, newsletters,
# shops, notifications), so every delivered message runs through nearly all 50 tests; six
# rules near the end match part of the corpus and file it into five folders (created on first
# use) or flag it in the INBOX; everything else is kept.  Each matching rule ends in "stop",
# so a message is stored exactly once.
#
# When the server does not support imap4flags, bench/rules.py installs the script without
# "imap4flags" in the require line and without the ':flags "\\Flagged"' of rule 50.

require ["fileinto", "mailbox", "envelope", "subaddress", "imap4flags"];

# --- mailing lists, by List-Id ---------------------------------------------------------------
# 1
if header :contains "list-id" "<debian-devel.lists.debian.org>" {
    fileinto :create "Lists/debian-devel"; stop;
}
# 2
if header :contains "list-id" ["<python-dev.python.org>", "<python-ideas.python.org>"] {
    fileinto :create "Lists/python"; stop;
}
# 3
if header :contains "list-id" "<linux-kernel.vger.kernel.org>" {
    fileinto :create "Lists/lkml"; stop;
}
# 4
if anyof (header :contains "list-id" "<users.lists.openstreetmap.org>",
          address :is "to" "osm-talk@openstreetmap.org") {
    fileinto :create "Lists/osm"; stop;
}
# 5
if header :contains "list-id" ["<sqlite-users.mailinglists.sqlite.org>", "<pgsql-general.lists.postgresql.org>"] {
    fileinto :create "Lists/databases"; stop;
}
# 6
if allof (exists "list-id", header :contains "subject" "[tc39]") {
    fileinto :create "Lists/tc39"; stop;
}
# 7
if header :is "list-id" "Neighbourhood watch <watch.groups.example.com>" {
    fileinto :create "Lists/neighbourhood"; stop;
}
# 8
if envelope :domain "from" "bounces.groups.example.com" {
    fileinto :create "Lists/groups"; stop;
}

# --- newsletters and shops --------------------------------------------------------------------
# 9
if address :domain "from" ["newsletter.shop.example", "mail.bigstore.example", "news.airline.example"] {
    fileinto :create "Newsletters"; stop;
}
# 10
if header :contains "from" ["newsletter@", "noreply@", "no-reply@", "donotreply@"] {
    fileinto :create "Newsletters"; stop;
}
# 11
if allof (header :contains "subject" ["% off", "sale ends", "limited offer"],
          not address :domain "from" "corp.example.com") {
    fileinto :create "Promotions"; stop;
}
# 12
if exists "list-unsubscribe" {
    fileinto :create "Newsletters"; stop;
}
# 13
if header :contains "precedence" ["bulk", "junk"] {
    fileinto :create "Bulk"; stop;
}
# 14
if address :localpart "from" ["marketing", "promo", "offers", "deals"] {
    fileinto :create "Promotions"; stop;
}
# 15
if header :contains "subject" ["your order", "has shipped", "out for delivery now"] {
    fileinto :create "Orders"; stop;
}
# 16
if address :domain "from" ["parcel.example", "courier.example", "post.example"] {
    fileinto :create "Orders"; stop;
}

# --- notifications ---------------------------------------------------------------------------
# 17
if address :is "from" "notifications@github.example" {
    fileinto :create "Notifications/github"; stop;
}
# 18
if header :matches "subject" "[*] Pull request #*" {
    fileinto :create "Notifications/github"; stop;
}
# 19
if anyof (address :domain "from" "jira.example.com", header :contains "subject" "[JIRA]") {
    fileinto :create "Notifications/jira"; stop;
}
# 20
if header :contains "x-mailer" "Nagios" {
    fileinto :create "Notifications/monitoring"; stop;
}
# 21
if allof (address :localpart "from" "alerts", header :contains "subject" ["CRITICAL", "WARNING"]) {
    fileinto :create "Notifications/monitoring"; stop;
}
# 22
if address :domain "from" ["calendar.example.com", "doodle.example"] {
    fileinto :create "Notifications/calendar"; stop;
}
# 23
if header :contains "auto-submitted" "auto-generated" {
    fileinto :create "Notifications"; stop;
}
# 24
if envelope :localpart "from" ["mailer-daemon", "postmaster"] {
    fileinto :create "Bounces"; stop;
}

# --- social networks and services -------------------------------------------------------------
# 25
if address :domain "from" ["social.example", "friends.example", "photos.example"] {
    fileinto :create "Social"; stop;
}
# 26
if header :contains "subject" ["tagged you", "commented on your", "new follower"] {
    fileinto :create "Social"; stop;
}
# 27
if address :domain "from" ["bank.example", "creditcard.example"] {
    fileinto :create "Banking"; stop;
}
# 28
if allof (header :contains "subject" "statement", address :domain "from" "bank.example") {
    fileinto :create "Banking"; stop;
}
# 29
if address :domain "from" ["utility.example", "telco.example", "insurance.example"] {
    fileinto :create "Bills"; stop;
}
# 30
if header :contains "subject" ["password reset", "verify your email", "sign-in attempt"] {
    fileinto :create "Security"; stop;
}

# --- spam and unwanted -----------------------------------------------------------------------
# 31
if header :contains "x-spam-flag" "YES" {
    fileinto :create "Junk"; stop;
}
# 32
if header :contains "subject" ["[SPAM]", "***SPAM***", "viagra", "lottery winner"] {
    fileinto :create "Junk"; stop;
}
# 33
if address :domain "from" ["spammer.example", "cheap-pills.example"] {
    discard; stop;
}
# 34
if header :contains "received" "from mx.spam-relay.example" {
    fileinto :create "Junk"; stop;
}
# 35
if envelope :domain "from" ["phish.example", "lookalike-bank.example"] {
    discard; stop;
}
# 36
if size :over 20M {
    fileinto :create "Huge"; stop;
}

# --- people and projects ---------------------------------------------------------------------
# 37
if address :is "from" ["landlord@rentals.example", "caretaker@rentals.example"] {
    fileinto :create "Home"; stop;
}
# 38
if anyof (header :contains "subject" "school trip", address :domain "from" "school.example") {
    fileinto :create "Kids"; stop;
}
# 39
if allof (address :domain "from" "corp.example.com", header :contains "subject" "[payroll]") {
    fileinto :create "HR"; stop;
}
# 40
if address :localpart "to" ["postmaster", "abuse", "hostmaster"] {
    fileinto :create "Admin"; stop;
}
# 41
if header :contains "cc" "board@corp.example.com" {
    fileinto :create "Board"; stop;
}
# 42
if envelope :detail "to" "shopping" {
    fileinto :create "Orders"; stop;
}

# --- the rules that match part of the corpus --------------------------------------------------
# 43: sub-addressed mail (bench+lists@...) goes to Lists
if envelope :detail "to" "lists" {
    fileinto :create "Lists"; stop;
}
# 44
if header :contains "subject" "conference call dial-in" {
    fileinto :create "Work"; stop;
}
# 45: money matters from the company
if allof (address :domain "from" "corp.example.com",
          header :contains "subject" ["invoice", "budget", "quarter"]) {
    fileinto :create "Finance"; stop;
}
# 46: big attachments
if size :over 200K {
    fileinto :create "Large"; stop;
}
# 47: friends and holidays
if anyof (address :is "from" ["alice@example.org", "bob@example.org"],
          header :contains "subject" ["holiday", "weekend"]) {
    fileinto :create "Personal"; stop;
}
# 48: support tickets from outside the company
if allof (header :contains "subject" ["ticket", "support"],
          not address :domain "from" "corp.example.com") {
    fileinto :create "Support"; stop;
}
# 49
if address :domain "to" "lists.example.test" {
    fileinto :create "Lists"; stop;
}
# 50: the boss is flagged and kept
if address :localpart "from" "victor" {
    keep :flags "\\Flagged"; stop;
}
