// A source that is one text file (--api-keys, --session-key-file): read at start-up, where a
// bad file stops the gateway naming it; then watched, where a bad edit is logged and what is
// in use stays. Each such file only says how it is named, parsed and counted.
import { readTextFile, watchTextFile, type Closable, type WatchTiming } from '../../files/watch.ts';
import type { Logger } from '../../telemetry/log.ts';

export interface TextFileFormat<T> {
  /** Names the file in start-up errors: "<label> <path>: does not exist". */
  readonly label: string;
  /** The file's text -> its data; throws naming the file (and line) when it is wrong. */
  readonly parse: (text: string, path: string) => T;
  /** Logged once while the watched file cannot be read. */
  readonly unreadableMessage: string;
  /** Logged when an edit does not parse. */
  readonly invalidMessage: string;
  /** Logged, with the file and `keys: count(value)`, when a new value is in use. */
  readonly loadedMessage: string;
  readonly count: (value: T) => number;
}

/** The file as read at start-up; its text goes to watch() so it is not read and applied twice. */
export interface LoadedTextFile<T> {
  readonly value: T;
  readonly text: string;
}

export interface TextFileSource<T> {
  /** Reads the file at start-up; throws naming the file (and line) when it is unusable. */
  load(path: string): Promise<LoadedTextFile<T>>;
  /**
   * Calls `onChange` with the file's data after the first read and after every valid change
   * (as watchTextFile describes), except for `initialText` (what load read, already in use).
   */
  watch(path: string, onChange: (value: T) => void, log: Logger, timing?: WatchTiming, initialText?: string): Closable;
}

export function textFileSource<T>(format: TextFileFormat<T>): TextFileSource<T> {
  return {
    async load(path) {
      const text = await readTextFile(path, format.label);
      return { value: format.parse(text, path), text };
    },
    watch(path, onChange, log, timing = {}, initialText) {
      return watchTextFile({
        path,
        timing,
        initialText,
        unreadableMessage: format.unreadableMessage,
        invalidMessage: format.invalidMessage,
        parse: (text) => format.parse(text, path),
        apply: (value) => {
          onChange(value);
          log.info(format.loadedMessage, { file: path, keys: format.count(value) });
        },
        log,
      });
    },
  };
}
