import assert from 'node:assert/strict';
import { renderReport, type SectionRecord } from '../../../bench/report';

describe('bench report: the curves section', () => {
  const section = (curves: SectionRecord['curves']): SectionRecord => ({
    format: 2,
    name: 'curves',
    title: 'Scale curves',
    command: 'npm run bench -- curves',
    at: '2026-11-28T09:00:00.000Z',
    elapsedSeconds: 600,
    machine: '2 × test CPU',
    host: ['host line'],
    unreported: [],
    notes: ['section note'],
    ...(curves ? { curves } : {}),
  });

  it('renders each curve as a table of its own, with its notes, before the section notes', () => {
    const text = renderReport('/nonexistent', [section([{ title: 'POST against connections', columns: ['connections', 'chain req/s'], rows: [['1', '250 [188–313]'], ['256', 'a | b']], notes: ['Errors: none.'] }])], undefined, []);
    const lines = text.split('\n');
    const at = lines.indexOf('### POST against connections');
    assert.ok(at > 0, text);
    assert.deepEqual(lines.slice(at + 2, at + 6), ['| connections | chain req/s |', '|---|---|', '| 1 | 250 [188–313] |', '| 256 | a \\| b |']);
    assert.ok(lines.indexOf('Errors: none.') > at + 5);
    assert.ok(lines.indexOf('section note') > lines.indexOf('Errors: none.'));
  });

  it('renders no curve heading for a section without curves', () => {
    assert.doesNotMatch(renderReport('/nonexistent', [section(undefined)], undefined, []), /^###/m);
  });
});
