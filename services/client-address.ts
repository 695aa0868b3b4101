import { isIPv6 } from "node:net";

/**
 * The client a per-address limit counts (connections, streams, reads, watches a client address): an
 * IPv4 address as it is, an IPv6 one by its /64 prefix. A /64 is one network's share, as an IPv4
 * address is one NAT's: a stranger holding one has billions of addresses, and counted one by one each
 * had the whole per-address budget. An IPv4 client of a dual-stack listener (::ffff:a.b.c.d) is its
 * IPv4 address; loopback (::1) is itself.
 */
export function clientOf(address: string | undefined): string {
  if (address === undefined || address === "") return "unknown";
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1];
  const bare = address.split("%")[0]; // a link-local address's zone
  if (!isIPv6(bare) || bare === "::1") return address;
  return `${groupsOf(bare).slice(0, 4).join(":")}::/64`;
}

/** The eight 16-bit groups of an IPv6 address (valid, as isIPv6 says), in lowercase hex without leading zeros. */
function groupsOf(address: string): string[] {
  const [head, tail] = address.split("::");
  const part = (text: string | undefined) => (text ? text.split(":").flatMap(dottedAsGroups) : []);
  const front = part(head);
  const back = part(tail);
  const groups = tail === undefined ? front : [...front, ...Array<string>(8 - front.length - back.length).fill("0"), ...back];
  return groups.map((group) => parseInt(group, 16).toString(16));
}

/** A group, or the two groups an embedded IPv4 address (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) stands for. */
function dottedAsGroups(group: string): string[] {
  if (!group.includes(".")) return [group];
  const [a, b, c, d] = group.split(".").map(Number);
  return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
}
