// The hub's tunnel addresses in memory: which host numbers are taken, a cursor past the highest
// ever handed out, and a queue of addresses freed below it. Every allocation and release is O(1),
// so enrolling the 10,000th node costs what enrolling the first did (the store is read once, at
// start, not on every enrollment).
import { hostAddress, hostNumber, SubnetFullError, type Subnet } from './subnet.js';

export class AddressPool {
  private readonly used = new Set<number>();
  /** Freed host numbers below `next`, oldest first: the longest-free address is reused first. */
  private readonly freed: number[] = [];
  private freedHead = 0;
  /** The lowest host number never handed out (2: .1 is the master's). */
  private next = 2;
  /** Host numbers examined by allocate(), for tests and the benchmark: one per allocation. */
  examined = 0;

  private constructor(private readonly subnet: Subnet, private readonly last: number) {}

  /** `taken`: the addresses held by enrolled nodes (outside the subnet or the master's are ignored). */
  static load(subnet: Subnet, taken: Iterable<string>): AddressPool {
    const pool = new AddressPool(subnet, 2 ** (32 - subnet.prefix) - 2);
    let max = 1;
    for (const ip of taken) {
      const n = hostNumber(subnet, ip);
      if (n === undefined || n < 2 || n > pool.last) continue;
      pool.used.add(n);
      if (n > max) max = n;
    }
    pool.next = max + 1;
    for (let n = 2; n < pool.next; n++) if (!pool.used.has(n)) pool.freed.push(n);
    return pool;
  }

  get size(): number {
    return this.used.size;
  }

  /** Takes a free address; throws SubnetFullError when none is left. */
  allocate(): string {
    while (this.freedHead < this.freed.length) {
      const n = this.freed[this.freedHead++]!;
      this.compact();
      this.examined++;
      // A freed number is only taken again through allocate(), so it is free here.
      this.used.add(n);
      return hostAddress(this.subnet, n);
    }
    if (this.next > this.last) {
      throw new SubnetFullError(`tunnel subnet ${this.subnet.cidr} has no free address left (${this.used.size} nodes enrolled); remove nodes or start the master with a larger --wg-subnet (a /16 holds 65,533 nodes)`);
    }
    this.examined++;
    const n = this.next++;
    this.used.add(n);
    return hostAddress(this.subnet, n);
  }

  /** Gives an address back (a removed node, or an enrollment that was rolled back). */
  release(ip: string): void {
    const n = hostNumber(this.subnet, ip);
    if (n === undefined || !this.used.delete(n)) return;
    this.freed.push(n);
  }

  has(ip: string): boolean {
    const n = hostNumber(this.subnet, ip);
    return n !== undefined && this.used.has(n);
  }

  // Drops the consumed head of the queue once it is most of the array, so memory stays bounded.
  private compact(): void {
    if (this.freedHead > 1024 && this.freedHead * 2 > this.freed.length) {
      this.freed.splice(0, this.freedHead);
      this.freedHead = 0;
    }
  }
}
