// ESLint flat config: typescript-eslint's type-aware rules over everything the repository runs.
// `npm run lint` runs this, then `tsc --noEmit`; `.ci/run` runs `npm run lint`.
import comments from '@eslint-community/eslint-plugin-eslint-comments/configs'
import js from '@eslint/js'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  // What .gitignore leaves out (built output, benchmark results, scratch work).
  { ignores: ['dist/', 'coverage/', 'node_modules/', '.bench/', 'scratch/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  comments.recommended,
  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: {
        // The TypeScript project service reads tsconfig.json (src, test, examples, bench, *.config.ts), so the rules
        // see the same types as `tsc`.
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A disable comment names its rule and says why after `--`, on the same line.
      '@eslint-community/eslint-comments/require-description': 'error',
      // The rules this linter is here for: a promise nobody awaits can reject with no handler, and Node then ends the
      // user's process. They are in recommendedTypeChecked; named here so that no later preset turns them down.
      // `void promise` does not count as handled: a promise is awaited, or its rejection handled (`.catch`) with a
      // comment saying why that is enough.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: false }],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/return-await': ['error', 'in-try-catch'],
      // `const { kind: _kind, ...rest } = x` leaves a field out; `_` names a parameter a signature needs but the body not.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      // Off in the library: every async function it flags implements a Promise-returning contract (a checkpoint store's
      // read/write, a sink's target(), close() and Symbol.asyncDispose) with nothing to wait for, where `async` is what
      // turns a throw into a rejection the caller's `await` or `.catch` sees. A forgotten `await`, the bug the rule
      // looks for, is a floating promise, which no-floating-promises reports.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // Off in tests and benchmarks: the `any` they handle is pg's `QueryResult.rows` (`any[]`) and vitest's asymmetric
      // matchers (`expect.any(Number)`, `expect.stringContaining(...)`), values that go straight into `expect` or a
      // printed number, where a wrong shape fails the test at run time. The library itself keeps these rules.
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    // Plain JavaScript (this file, the benchmark cases run with node) is outside tsconfig.json: lint it without types.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    ...tseslint.configs.disableTypeChecked,
  },
)
