#!/usr/bin/env bash
# Attack: read a secret off the command line. Every local user can read
# any process's argv (ps, /proc/PID/cmdline), so a token given as a flag is
# disclosed to the whole machine for as long as the daemon runs. Every
# secret key (ADMIN_AUTH_TOKEN, ENROLLMENT_TOKEN) is refused as a flag: the
# daemon exits 2 at once, the error names the key and where to put it
# instead, and the value itself never appears in what it prints.
. "$(dirname "$0")/../e2e/lib.sh"
SECRET="s3cret-on-argv-0123456789abcdef"

run timeout 10 env TRUST_DOMAIN=example.org STATE_DIR="$E2E_TMP/ctl" CONTROLLER_LISTEN=127.0.0.1:0 \
  ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=off "$ZTR_TEST_BIN/controller" --admin-auth-token "$SECRET"
expect_status 2 "controller --admin-auth-token is refused at start-up"
expect_err_has "ADMIN_AUTH_TOKEN is a secret and is not accepted on the command line" \
  "the error names the key"
expect_err_has "set ADMIN_AUTH_TOKEN in the environment (systemd EnvironmentFile) or admin_auth_token in the YAML file" \
  "the error says where the secret belongs"
! grep -qF -- "$SECRET" <<<"$RUN_OUT$RUN_ERR"
check "the admin token is not echoed" $?

run timeout 10 env TRUST_DOMAIN=example.org STATE_DIR="$E2E_TMP/ctl" CONTROLLER_LISTEN=127.0.0.1:0 \
  ADMIN_LISTEN=127.0.0.1:0 HEALTH_LISTEN=off "$ZTR_TEST_BIN/controller" --admin-auth-token="$SECRET"
expect_status 2 "controller --admin-auth-token=VALUE is refused too"
! grep -qF -- "$SECRET" <<<"$RUN_OUT$RUN_ERR"
check "the admin token given with = is not echoed" $?

for role in connector tunneler; do
  run timeout 10 env TRUST_DOMAIN=example.org STATE_DIR="$E2E_TMP/$role" NODE_NAME=n1 \
    CONTROLLER_ADDR=127.0.0.1:1 HEALTH_LISTEN=127.0.0.1:0 "$ZTR_TEST_BIN/$role" --enrollment-token "$SECRET"
  expect_status 2 "$role --enrollment-token is refused at start-up"
  expect_err_has "ENROLLMENT_TOKEN is a secret and is not accepted on the command line" \
    "the $role error names the key"
  ! grep -qF -- "$SECRET" <<<"$RUN_OUT$RUN_ERR"
  check "the enrollment token is not echoed by the $role" $?
  [ ! -e "$E2E_TMP/$role" ]
  check "the $role refused before touching its state directory" $?
done
finish
