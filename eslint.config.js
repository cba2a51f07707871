// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**', '.mesh/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': [
        'error',
        {
          paths: [
            'fs',
            'fs/promises',
            'path',
            'os',
            'crypto',
            'child_process',
            'net',
            'http',
            'events',
            'stream',
            'util',
            'zlib',
            'url',
            'worker_threads',
            'assert',
            'timers',
            'module',
          ].map((name) => ({ name, message: 'Use the node: protocol.' })),
        },
      ],
    },
  },
  {
    // The dashboard is browser code with its own tsconfig (DOM types, bundled by esbuild).
    files: ['web/**/*.ts'],
    languageOptions: {
      parserOptions: { project: './web/tsconfig.json', tsconfigRootDir: import.meta.dirname },
    },
    // A browser console is no log: the page reports problems on the page.
    rules: { 'no-console': 'error' },
  },
  {
    // Only the CLI, scripts, benchmarks and test fixtures talk to a terminal; everything else logs.
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**', 'src/mesh.ts'],
    rules: { 'no-console': 'error' },
  },
);
