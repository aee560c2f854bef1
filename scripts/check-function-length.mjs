#!/usr/bin/env node
// Fails when a function of the library (src/) is longer than MAX_LINES lines, counted from the line
// its declaration starts on to the line of its closing brace (issue 12: a function a newcomer reads
// whole). Native code (native/) is not TypeScript and is not checked. Usage:
//   node scripts/check-function-length.mjs [dir ...]   (default: src)
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';

const MAX_LINES = 80;

function* sourceFiles(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(path);
    else if (/\.[cm]?ts$/.test(entry.name) && !entry.name.endsWith('.d.ts')) yield path;
  }
}

/** What a reader calls the function: its name, its class's and its own, or where it is passed. */
function nameOf(node, file) {
  const own = node.name ? node.name.getText(file) : null;
  if (ts.isConstructorDeclaration(node)) return `${node.parent.name?.getText(file) ?? '(class)'}.constructor`;
  if (own && ts.isClassLike(node.parent)) return `${node.parent.name?.getText(file) ?? '(class)'}.${own}`;
  if (own) return own;
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) return parent.name.getText(file);
  return '(anonymous function)';
}

const tooLong = [];
const dirs = process.argv.length > 2 ? process.argv.slice(2) : ['src'];
for (const dir of dirs) {
  for (const path of sourceFiles(dir)) {
    const file = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
    const visit = (node) => {
      if (ts.isFunctionLike(node) && 'body' in node && node.body) {
        const first = file.getLineAndCharacterOfPosition(node.getStart(file)).line;
        const last = file.getLineAndCharacterOfPosition(node.getEnd()).line;
        const lines = last - first + 1;
        if (lines > MAX_LINES) tooLong.push(`${relative(process.cwd(), path)}:${first + 1}: ${nameOf(node, file)} has ${lines} lines`);
      }
      ts.forEachChild(node, visit);
    };
    visit(file);
  }
}

if (tooLong.length > 0) {
  console.error(`Functions over ${MAX_LINES} lines (split them along the steps they take):\n  ${tooLong.join('\n  ')}`);
  process.exit(1);
}
console.log(`check-function-length: no function over ${MAX_LINES} lines in ${dirs.join(', ')}`);
