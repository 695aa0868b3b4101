import { describe, expect, it } from "vitest";
import { clientOf } from "../../services/client-address.js";

describe("client-address - what a per-address limit counts", () => {
  it("an IPv6 client by its /64, however its address is written: a stranger with a /64 is one client, not billions", () => {
    const one = ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:0db8:0001:0002:0000:0000:0000:0009", "2001:DB8:1:2::abcd", "2001:db8:1:2::1.2.3.4"];
    expect(new Set(one.map(clientOf))).toEqual(new Set(["2001:db8:1:2::/64"]));
    expect(clientOf("2001:db8:1:3::1")).toBe("2001:db8:1:3::/64");
    expect(clientOf("::2")).toBe("0:0:0:0::/64");
    expect(clientOf("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(clientOf("2001:db8::")).toBe("2001:db8:0:0::/64");
  });

  it("an IPv4 client as it is, also through a dual-stack listener; loopback and an unknown peer as they are", () => {
    expect(clientOf("203.0.113.7")).toBe("203.0.113.7");
    expect(clientOf("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(clientOf("::FFFF:203.0.113.8")).toBe("203.0.113.8");
    expect(clientOf("::1")).toBe("::1");
    expect(clientOf(undefined)).toBe("unknown");
    expect(clientOf("not an address")).toBe("not an address");
  });
});
