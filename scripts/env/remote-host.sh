# shellcheck shell=bash
# A second "machine" for the remote-engine tests (issue 18), sourced by up.sh.
#
# It is a network namespace with an address of its own: berth reaches it only over
# the network (TCP, TLS, SSH), as it would a build server. It shares this machine's
# files (the same /etc, the same packages), so what runs in it is configured by
# scripts here, not copied. Its traffic to the outside (Debian's mirror, PyPI) is
# masqueraded through this machine; this machine is 10.203.0.1 from inside it.
REMOTE_NETNS=berth-remote
REMOTE_ADDR=10.203.0.2      # the remote host, as berth dials it
REMOTE_GATEWAY=10.203.0.1   # this machine, as the remote host sees it
REMOTE_VETH_HOST=berth-rh0
REMOTE_VETH_PEER=berth-rr0
REMOTE_REGISTRY_PORTS=5000,5001 # this machine's registries, at the same address on the remote host

in_remote() { ip netns exec "$REMOTE_NETNS" "$@"; }

# remote_registry_forward: the remote host's 127.0.0.1:5000/5001 reach this machine's registries.
remote_registry_forward() {
  in_remote sysctl -qw net.ipv4.conf.all.route_localnet=1
  sysctl -qw "net.ipv4.conf.$REMOTE_VETH_HOST.route_localnet=1"
  local out=(-d 127.0.0.1/32 -p tcp -m multiport --dports "$REMOTE_REGISTRY_PORTS" -j DNAT --to-destination "$REMOTE_GATEWAY")
  in_remote iptables -t nat -C OUTPUT "${out[@]}" 2>/dev/null || in_remote iptables -t nat -A OUTPUT "${out[@]}"
  local masq=(-s 127.0.0.1/32 -o "$REMOTE_VETH_PEER" -j MASQUERADE)
  in_remote iptables -t nat -C POSTROUTING "${masq[@]}" 2>/dev/null || in_remote iptables -t nat -A POSTROUTING "${masq[@]}"
  local in=(-i "$REMOTE_VETH_HOST" -d "$REMOTE_GATEWAY/32" -p tcp -m multiport --dports "$REMOTE_REGISTRY_PORTS"
    -j DNAT --to-destination 127.0.0.1)
  iptables -t nat -C PREROUTING "${in[@]}" 2>/dev/null || iptables -t nat -A PREROUTING "${in[@]}"
}

remote_host_up() {
  if ! ip netns list | grep -qw "$REMOTE_NETNS"; then
    ip netns add "$REMOTE_NETNS"
  fi
  if ! ip link show "$REMOTE_VETH_HOST" >/dev/null 2>&1; then
    ip link add "$REMOTE_VETH_HOST" type veth peer name "$REMOTE_VETH_PEER"
    ip link set "$REMOTE_VETH_PEER" netns "$REMOTE_NETNS"
  fi
  ip addr replace "$REMOTE_GATEWAY/24" dev "$REMOTE_VETH_HOST"
  ip link set "$REMOTE_VETH_HOST" up
  in_remote ip addr replace "$REMOTE_ADDR/24" dev "$REMOTE_VETH_PEER"
  in_remote ip link set lo up
  in_remote ip link set "$REMOTE_VETH_PEER" up
  in_remote ip route replace default via "$REMOTE_GATEWAY"
  sysctl -qw net.ipv4.ip_forward=1
  # ip netns exec bind-mounts /etc/netns/NAME/* over /etc: the host's resolver
  mkdir -p "/etc/netns/$REMOTE_NETNS"
  cp /etc/resolv.conf "/etc/netns/$REMOTE_NETNS/resolv.conf"
  local rule=(-s "$REMOTE_ADDR/32" ! -d "$REMOTE_GATEWAY/24" -j MASQUERADE)
  iptables -t nat -C POSTROUTING "${rule[@]}" 2>/dev/null || iptables -t nat -A POSTROUTING "${rule[@]}"
  # dockerd's FORWARD policy is DROP: let the remote host's traffic through
  for dir in "-i $REMOTE_VETH_HOST" "-o $REMOTE_VETH_HOST"; do
    # shellcheck disable=SC2086
    iptables -C FORWARD $dir -j ACCEPT 2>/dev/null || iptables -I FORWARD $dir -j ACCEPT
  done
  remote_registry_forward
}
