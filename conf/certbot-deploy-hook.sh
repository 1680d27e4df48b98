#!/bin/sh
# certbot deploy hook for Haven: after every issuance or renewal, copy the certificate into
# Haven's folder and reload Haven.  New connections get the new certificate; open IMAP, POP3,
# ManageSieve, submission and HTTPS sessions are not dropped.
#
# Install (as root):
#   install -m 0755 conf/certbot-deploy-hook.sh /etc/letsencrypt/renewal-hooks/deploy/haven.sh
#   RENEWED_LINEAGE=/etc/letsencrypt/live/mail.example.org \
#       /etc/letsencrypt/renewal-hooks/deploy/haven.sh          # once, for the current certificate
# and in /etc/haven/haven.ini:
#   [tls]
#   cert = /etc/haven/tls/mail.example.org.pem
#   key = /etc/haven/tls/mail.example.org.pem
#   cert_dir = /etc/haven/tls        (only to serve further names by SNI; may stay empty)
#
# Each certificate lineage becomes /etc/haven/tls/NAME.pem: its private key and its full chain
# in one file, readable by root and the haven group only.  Haven never reads
# /etc/letsencrypt itself (the keys there are root's alone).  The file is written beside
# its final name and renamed, so Haven never reads half a file.
set -eu

TLS_DIR=${HAVEN_TLS_DIR:-/etc/haven/tls}
GROUP=${HAVEN_GROUP:-haven}
SERVICE=${HAVEN_SERVICE:-haven}

: "${RENEWED_LINEAGE:?set by certbot: the /etc/letsencrypt/live/NAME folder}"
name=$(basename "$RENEWED_LINEAGE")

umask 077
install -d -m 0750 -o root -g "$GROUP" "$TLS_DIR"
tmp="$TLS_DIR/.$name.pem.tmp"
cat "$RENEWED_LINEAGE/privkey.pem" "$RENEWED_LINEAGE/fullchain.pem" > "$tmp"
chown "root:$GROUP" "$tmp"
chmod 0640 "$tmp"
mv -f "$tmp" "$TLS_DIR/$name.pem"

# SIGHUP: Haven reads its certificates again (a bad file is logged and the old one kept)
if systemctl is-active --quiet "$SERVICE" 2>/dev/null; then
    systemctl reload "$SERVICE"
fi
