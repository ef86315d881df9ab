import t from 'tap';
import fc from 'fast-check';
import { SlotMap, type Slotted } from '../../lib/runtime/slot-map.ts';

interface Item extends Slotted {
  readonly name: string;
}
const item = (name: string): Item => ({ name, slot: -1 });

t.test('set, get, has, delete and size, as a Map would', async (t) => {
  const map = new SlotMap<Item, number>();
  const [a, b, c] = [item('a'), item('b'), item('c')];
  map.set(a, 1);
  map.set(b, 2);
  map.set(c, 3);
  t.equal(map.size, 3);
  t.equal(map.get(b), 2);
  map.set(b, 20);
  t.equal(map.get(b), 20, 'setting again replaces the value');
  t.equal(map.size, 3);
  t.equal(map.delete(a), true);
  t.equal(map.delete(a), false, 'deleting twice');
  t.equal(a.slot, -1, 'a key that left has no slot');
  t.equal(map.has(a), false);
  t.equal(map.get(a), undefined);
  t.same(map.entries().map(([k, v]) => [k.name, v]).sort(), [['b', 20], ['c', 3]], 'the last entry took the freed slot');
  t.equal(map.first()?.name, 'c');
});

t.test('keys() and entries() are copies: entries may leave while the caller goes through them', async (t) => {
  const map = new SlotMap<Item, true>();
  const items = ['a', 'b', 'c', 'd'].map(item);
  for (const i of items) map.set(i, true);
  const seen: string[] = [];
  for (const k of map.keys()) {
    seen.push(k.name);
    map.delete(k);
  }
  t.same(seen.sort(), ['a', 'b', 'c', 'd']);
  t.equal(map.size, 0);
  t.equal(map.first(), undefined);
});

t.test('a key is in at most one SlotMap', async (t) => {
  const one = new SlotMap<Item, number>();
  const two = new SlotMap<Item, number>();
  const a = item('a');
  one.set(a, 1);
  t.throws(() => two.set(a, 2), /another SlotMap/);
  t.equal(two.has(a), false, 'nor does another map think it holds it');
  one.delete(a);
  two.set(a, 2);
  t.equal(two.get(a), 2, 'once it left the first, the second takes it');
});

t.test('random sets and deletes agree with a Map', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.boolean(), fc.nat(20), fc.integer()), { maxLength: 200 }), (ops) => {
      const items = Array.from({ length: 21 }, (_, i) => item(String(i)));
      const slots = new SlotMap<Item, number>();
      const model = new Map<Item, number>();
      for (const [add, n, value] of ops) {
        const k = items[n] as Item;
        if (add) {
          slots.set(k, value);
          model.set(k, value);
        } else if (slots.delete(k) !== model.delete(k)) {
          throw new Error('delete disagrees');
        }
      }
      if (slots.size !== model.size) throw new Error('size disagrees');
      for (const k of items) if (slots.get(k) !== model.get(k)) throw new Error(`value of ${k.name} disagrees`);
    }),
  );
  t.pass('1000 random runs');
});
