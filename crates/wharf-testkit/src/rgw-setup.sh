#!/usr/bin/env bash
# Prepares a single-node Ceph cluster (one monitor, one memstore OSD) and its RADOS gateway in
# folder $1, all on 127.0.0.1: config, cephx keys made now, monitor and OSD file systems. Daemons
# are started by the caller (crates/wharf-testkit/src/rgw.rs) so it owns their processes.
# Steps between daemon starts are driven by the caller too: this script runs in phases.
#   rgw-setup.sh DIR MON_PORT RGW_PORT conf   -> ceph.conf, keys, monmap, mon --mkfs
#   rgw-setup.sh DIR MON_PORT RGW_PORT osd    -> (monitor running) OSD id registered, OSD --mkfs
#   rgw-setup.sh DIR MON_PORT RGW_PORT rgw    -> (OSD running) gateway key
#   rgw-setup.sh DIR MON_PORT RGW_PORT user   -> (gateway running) S3 user; prints "KEY SECRET"
set -euo pipefail
dir=$1 mon_port=$2 rgw_port=$3 phase=$4
conf="$dir/ceph.conf"
cd "$dir"
case "$phase" in
conf)
  fsid=$(cat /proc/sys/kernel/random/uuid)
  mkdir -p run log mon osd rgw
  cat >"$conf" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$mon_port
mon initial members = a
public addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/admin.keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
osd objectstore = memstore
memstore device bytes = 4294967296
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
# The monitor's data is a few MiB; a nearly full disk (CI machines) must not stop it.
mon data avail crit = 0
mon data avail warn = 0
osd crush chooseleaf type = 0
osd memory target = 268435456
[osd]
keyring = $dir/osd/\$name/keyring
[client.rgw.a]
keyring = $dir/rgw.keyring
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
CONF
  ceph-authtool --create-keyring mon.keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring admin.keyring --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool mon.keyring --import-keyring admin.keyring >/dev/null
  monmaptool --create --addv a "[v1:127.0.0.1:$mon_port]" --fsid "$fsid" monmap >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap monmap --keyring mon.keyring
  ;;
osd)
  uuid=$(cat /proc/sys/kernel/random/uuid)
  secret=$(ceph-authtool --gen-print-key)
  id=$(echo "{\"cephx_secret\": \"$secret\"}" | ceph -c "$conf" --connect-timeout 20 osd new "$uuid" -i -)
  mkdir -p "osd/osd.$id"
  ceph-authtool --create-keyring "osd/osd.$id/keyring" --name "osd.$id" --add-key "$secret" >/dev/null
  ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid" >"$dir/log/osd-mkfs.out" 2>&1
  echo "$id"
  ;;
rgw)
  ceph -c "$conf" auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' -o rgw.keyring
  ;;
user)
  key=WHARFTEST$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
  secret=$(head -c 30 /dev/urandom | base64 | tr -d '/+=\n')
  radosgw-admin -c "$conf" user create --uid wharf-test --display-name wharf-test \
    --access-key "$key" --secret-key "$secret" >/dev/null
  echo "$key $secret"
  ;;
esac
