// JSON text of generated protocol messages that keeps every map entry. Proto maps are JS Maps
// (useMapType), which JSON.stringify would write as {}; the generated toJSON copies a map into a
// plain {} by assignment, where a key named __proto__ is silently lost. Object.fromEntries defines
// own properties, so every key survives, and the generated fromJSON reads this text back.

function replacer(_key: string, value: unknown): unknown {
  return value instanceof Map ? Object.fromEntries(value) : value;
}

/** JSON.stringify for values holding protocol messages; read back with `Message.fromJSON(JSON.parse(text))`. */
export function stringifyProto(value: unknown, space?: number): string {
  return JSON.stringify(value, replacer, space);
}
