/**
 * Finds pipelines whose reader may stop before its producer is done — `head`, `grep -q`,
 * `sed …q`, `awk …exit`, `read` — in shell scripts and Dockerfile RUN steps. Under
 * `pipefail` the producer then dies of SIGPIPE and the step fails with 141, but only when
 * it really runs: a cached layer hides it (Dockerfile.core's `ferretdb --version | head -n1`
 * broke the demo on every new machine while CI stayed green). Read the whole stream
 * (`sed -n 1p`, `awk 'NR==1'`), or write to a file and read that.
 * Pure: text in, findings out.
 */

export interface Finding {
  line: number;
  reader: string;
  pipeline: string;
}

interface Word {
  text: string;
  line: number;
}

/**
 * Splits shell text into the commands that follow each pipe: for every `|` (not `||`)
 * outside quotes and comments, the words of the command on its right.
 */
function commandsAfterPipes(text: string, firstLine: number): Word[][] {
  const out: Word[][] = [];
  let line = firstLine;
  let i = 0;
  const n = text.length;
  let current: Word[] | undefined; // words of the command after the last pipe, while reading it
  let word = '';
  let wordLine = line;
  let inWord = false;
  const endWord = (): void => {
    if (inWord && current) current.push({ text: word, line: wordLine });
    word = '';
    inWord = false;
  };
  const endCommand = (): void => {
    endWord();
    if (current) out.push(current);
    current = undefined;
  };
  const addChar = (c: string): void => {
    if (!inWord) wordLine = line;
    inWord = true;
    word += c;
  };
  while (i < n) {
    const c = text[i] as string;
    if (c === '\\' && i + 1 < n) {
      if (text[i + 1] === '\n') line++;
      else addChar(text[i + 1] as string);
      i += 2;
      continue;
    }
    if (c === "'" || c === '"') {
      const close = text.indexOf(c, i + 1);
      const end = close < 0 ? n : close;
      const body = text.slice(i + 1, end);
      for (const ch of body) addChar(ch);
      if (body.length === 0) addChar('');
      line += body.split('\n').length - 1;
      i = end + 1;
      continue;
    }
    if (c === '<' && text.startsWith('<<', i) && text[i + 2] !== '<') {
      // A here-document's body is data, not commands: skip from the next line to its delimiter.
      const m = /^<<(-?)\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\2/.exec(text.slice(i));
      if (m) {
        const bodyStart = text.indexOf('\n', i);
        if (bodyStart >= 0) {
          const rest = text.slice(bodyStart + 1).split('\n');
          const strip = m[1] === '-';
          const end = rest.findIndex((l) => (strip ? l.replace(/^\t+/, '') : l) === m[3]);
          const skipped = end < 0 ? rest.length : end + 1;
          // Keep the rest of the here-doc's own line (e.g. `| cmd` after it), then jump.
          const head = text.slice(i + m[0].length, bodyStart);
          const tail = rest.slice(skipped).join('\n');
          const sub = commandsAfterPipes(`${head}\n${tail}`, line);
          // Lines of the skipped body still count for the findings after it.
          for (const cmd of sub) for (const w of cmd) if (w.line > line) w.line += skipped;
          endCommand();
          out.push(...sub);
          return out;
        }
      }
    }
    if (c === '#' && !inWord) {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? n : nl;
      continue;
    }
    if (c === '|') {
      if (text[i + 1] === '|') {
        endCommand();
        i += 2;
        continue;
      }
      endCommand();
      current = [];
      i += text[i + 1] === '&' ? 2 : 1;
      // A pipe may be followed by newlines before its reader.
      while (i < n && /\s/.test(text[i] as string)) {
        if (text[i] === '\n') line++;
        i++;
      }
      continue;
    }
    if (c === '\n' || c === ';' || c === '&' || c === ')' || c === '(' || c === '`') {
      endCommand();
      if (c === '\n') line++;
      i++;
      continue;
    }
    if (c === ' ' || c === '\t') {
      endWord();
      i++;
      continue;
    }
    addChar(c);
    i++;
  }
  endCommand();
  return out;
}

const GREP_ARG_OPTIONS = new Set(['e', 'f', 'A', 'B', 'C', 'd', 'D']);

function grepStopsEarly(args: string[]): boolean {
  for (let j = 0; j < args.length; j++) {
    const a = args[j] as string;
    if (a === '--') break;
    if (/^--(quiet|silent|max-count|files-with-matches|files-without-match)\b/.test(a)) return true;
    if (!/^-[^-]/.test(a)) continue;
    for (let k = 1; k < a.length; k++) {
      const letter = a[k] as string;
      if (letter === 'q' || letter === 'm' || letter === 'l' || letter === 'L') return true;
      if (GREP_ARG_OPTIONS.has(letter)) {
        if (k === a.length - 1) j++; // the option's value is the next word
        break;
      }
    }
  }
  return false;
}

// A sed `q`/`Q` command: at the start of the script or after an address or separator.
const SED_QUIT = /(^|[;{}\s/0-9$])[qQ]\s*[0-9]*\s*($|[;}])/;

/** The early-exit reader a command is, if it is one. */
export function earlyExitReader(words: string[]): string | undefined {
  let k = 0;
  while (k < words.length && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[k] as string)) k++;
  const cmd = (words[k] ?? '').split('/').pop() ?? '';
  const args = words.slice(k + 1);
  switch (cmd) {
    case 'head':
    case 'read':
      return cmd;
    case 'grep':
    case 'egrep':
    case 'fgrep':
      return grepStopsEarly(args) ? `${cmd} ${args.filter((a) => a.startsWith('-')).join(' ')}`.trim() : undefined;
    case 'sed': {
      const scripts = args.filter((a, j) => !a.startsWith('-') || args[j - 1] === '-e');
      return scripts.some((s) => SED_QUIT.test(s)) ? 'sed …q' : undefined;
    }
    case 'awk':
    case 'gawk':
    case 'mawk':
      return args.some((a) => /\bexit\b/.test(a)) ? 'awk …exit' : undefined;
    default:
      return undefined;
  }
}

/** Findings in a shell script. */
export function checkShell(text: string, firstLine = 1): Finding[] {
  const findings: Finding[] = [];
  for (const words of commandsAfterPipes(text, firstLine)) {
    const reader = earlyExitReader(words.map((w) => w.text));
    if (reader) findings.push({ line: words[0]?.line ?? firstLine, reader, pipeline: words.map((w) => w.text).join(' ') });
  }
  return findings;
}

/** Findings in a Dockerfile's shell-form RUN steps (continuation lines joined). */
export function checkDockerfile(text: string): Finding[] {
  const findings: Finding[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*RUN\s+(.*)$/i.exec(lines[i] as string);
    if (!m) continue;
    const start = i;
    let body = m[1] as string;
    while (/\\\s*$/.test(lines[i] as string) && i + 1 < lines.length) {
      i++;
      body += `\n${lines[i] as string}`;
    }
    // BuildKit flags (--mount=..., --network=...) come before the command.
    body = body.replace(/^(\s*--[a-z-]+=\S+\s*(\\\s*\n)?)+/, (flags) => '\n'.repeat(flags.split('\n').length - 1));
    if (body.trimStart().startsWith('[')) continue; // exec form runs no shell
    findings.push(...checkShell(body, start + 1));
  }
  return findings;
}
