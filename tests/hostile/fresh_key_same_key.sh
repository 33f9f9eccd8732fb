#!/usr/bin/env bash
# Attack: a stolen node key renews itself. Renewal must bring a fresh key,
# and the controller refuses a CSR for the key the session authenticated
# with — but it used to compare the SubjectPublicKeyInfo bytes. The same key
# in another encoding that the CSR parser accepts (here a NULL after the
# BIT STRING inside the SPKI SEQUENCE) slipped through and got a new
# certificate, so the stolen key outlived its certificate. The controller
# now compares the decoded keys: `key_reused`, a `denied` event, no new
# certificate.
. "$(dirname "$0")/../e2e/lib.sh"
T="$E2E_TMP"
start_controller ctl || exit 1
CA="$CTL_STATE/ca/ca-1.crt"
P=(--controller "$CTL_ADDR" --trust-domain example.org)

mkdir -p "$T/n"
run probe enroll "${P[@]}" --ca "$CA" --token "$(ctl token create --role connector --name n1 --address 127.0.0.1)" \
  --role connector --name n1 --address 127.0.0.1:7444 --out "$T/n"
expect_status 0 "the victim node enrolls"
NODE=$(sed -n 's/^enrolled \([0-9a-f]*\) .*/\1/p' <<<"$RUN_OUT")
serial_now() { curl -s -H "Authorization: Bearer $E2E_ADMIN_TOKEN" "$ADMIN_URL/api/admin/nodes" |
  grep -o "\"cert_serial\": *\"[0-9a-f]*\"" | head -1 | sed 's/.*"\([0-9a-f]*\)"$/\1/'; }
SERIAL_BEFORE=$(serial_now)

# ---- a CSR for the node's own key, its SPKI re-encoded -------------------------
hex() { od -An -tx1 -v | tr -d ' \n'; }
unhex() { printf '%b' "$(sed 's/../\\x&/g' <<<"$1")"; }
tlv() { # tlv TAG-HEX VALUE-HEX: DER with the shortest length form
  local n=$((${#2} / 2))
  if [ "$n" -lt 128 ]; then printf '%s%02x%s' "$1" "$n" "$2"
  elif [ "$n" -lt 256 ]; then printf '%s81%02x%s' "$1" "$n" "$2"
  else printf '%s82%04x%s' "$1" "$n" "$2"; fi
}
spki=$(openssl pkey -in "$T/n/key.pem" -pubout -outform DER | hex)
[ "${spki:0:4}" = 3059 ]; check "P-256 SubjectPublicKeyInfo (91 bytes)" $?
spki_alt="305b${spki:4}0500"            # same key; a NULL after the BIT STRING
name=$(tlv 30 "$(tlv 31 "$(tlv 30 "0603550403$(tlv 0c 6e31)")")")   # CN=n1
info=$(tlv 30 "020100${name}${spki_alt}a000")
unhex "$info" >"$T/info.der"
openssl dgst -sha256 -sign "$T/n/key.pem" -out "$T/sig.der" "$T/info.der"
csr=$(tlv 30 "${info}300a06082a8648ce3d040302$(tlv 03 "00$(hex <"$T/sig.der")")")
{ echo "-----BEGIN CERTIFICATE REQUEST-----"; unhex "$csr" | base64 -w 64
  echo "-----END CERTIFICATE REQUEST-----"; } >"$T/same-key.csr"
# (openssl itself refuses that SPKI; wolfSSL's decoder, behind the
# controller's CSR parser, takes it.)
grep -q '^-----END CERTIFICATE REQUEST-----$' "$T/same-key.csr"; check "the forged CSR is written" $?

# ---- the attack ------------------------------------------------------------------
run probe session "${P[@]}" --dir "$T/n" --role connector --renew-csr "$T/same-key.csr" \
  --duration 3000 --until error
expect_out_has '"code":"key_reused"' "renewal with the same key, re-encoded: refused key_reused"
! grep -qF '"type":"renewed"' <<<"$RUN_OUT"; check "no certificate issued for the reused key" $?
run ctl events
expect_out_has "kind=denied node=$NODE detail=\"renewal reused the current key\"" "a denied event names the node"
[ "$(serial_now)" = "$SERIAL_BEFORE" ]; check "the node's certificate serial is unchanged" $?
! grep -qF 'msg="certificate renewed"' "$CTL_LOG"; check "controller renewed nothing" $?

# ---- a real renewal with a fresh key still works ------------------------------------
run probe session "${P[@]}" --dir "$T/n" --role connector --renew --until renewed --duration 5000
expect_out_has '"type":"renewed"' "a fresh key renews"
[ "$(serial_now)" != "$SERIAL_BEFORE" ]; check "and the serial moves on" $?
stop_controller
[ "$STOP_STATUS" -eq 0 ]; check "controller exits 0, nothing leaked (got $STOP_STATUS)" $?
finish
