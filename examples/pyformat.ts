// Prints values the way Python's print() does, so the examples' output matches the originals
// (`[42, None, 'hello']`, `{1: '1', '2': 2}`).
export function format(value: unknown): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'string') return `'${value}'`;
  if (Array.isArray(value)) return `[${value.map(format).join(', ')}]`;
  if (value instanceof Map) return `{${[...value].map(([k, v]) => `${format(k)}: ${format(v)}`).join(', ')}}`;
  if (typeof value === 'object') {
    return `{${Object.entries(value).map(([k, v]) => `${format(k)}: ${format(v)}`).join(', ')}}`;
  }
  return String(value);
}
