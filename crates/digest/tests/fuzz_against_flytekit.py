"""Differential fuzzing of the source_root digest against flytekit.

Builds random trees (odd names, symlinks, random .dockerignore and .gitignore,
with and without git) and compares the digest printed by the `ls` example with
flytekit's. Run with flytekit's interpreter:

    cargo build -p berth-digest --example ls
    LS_BIN=target/debug/examples/ls /opt/flytekit-venv/bin/python \
        crates/digest/tests/fuzz_against_flytekit.py SEED COUNT
"""
import os, random, subprocess, sys, tempfile, shutil
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_expected as g
LS = os.environ.get('LS_BIN', 'target/debug/examples/ls')
parts = ['A', 'K', 'Docs', 'é.md', 'x\ty', ']', '!', '#h', 'a', 'B', 'a-b', 'a.b', 'x y', 'é', 'Ü', '__pycache__', '.cache', 'docs', 'build', '.git', 'k', 'z0', '_', 'ü.log', 'f.pyc', 'F.PYC', 'n.md', 'N.MD', 'tmp', '[x]', 'q?']
pats = ['a/**/k', '**/a*', '[A-Z]*', '!**/*.log', 'docs/**', '*\r', '! k', '**/', 'a/../../k', './a', 'a//b', '*.[mM][dD]', '[]]', 'é/*', '**/__pycache__', '!__pycache__', '*', '**', '*.md', '!*.md', 'docs', 'docs/', '!docs/k', '**/*.log', '*.PYC', 'a/**', '!a/b', 'build/../k', '../z0', 'x y', '  tmp ', '#c', '[a-c]*', '[!a]', '?', '**/k', 'a?b', '*/k', '!.dockerignore', '.', '/', 'é', 'Ü*', 'q\\?', '[x]']
gpats = ['é', 'Ü', '*.b', '**/k', '[ab]*', 'a/**/k', '**/a*', '[A-Z]*', '!**/*.log', 'docs/**', '*\r', '! k', '**/', 'a/../../k', './a', 'a//b', '*.[mM][dD]', '[]]', 'é/*', '**/__pycache__', '!__pycache__', '*.log', 'build/', '/k', '*.md', 'tmp', '!keep', 'docs/*', '*.pyc']
random.seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
bad = 0
for it in range(int(sys.argv[2]) if len(sys.argv) > 2 else 50):
    d = tempfile.mkdtemp()
    try:
        entries = []
        used = set()
        for _ in range(random.randint(1, 25)):
            depth = random.randint(1, 4)
            p = '/'.join(random.choice(parts) for _ in range(depth))
            # avoid file/dir conflicts
            if any(u.startswith(p + '/') or p.startswith(u + '/') or u == p for u in used):
                continue
            used.add(p)
            r = random.random()
            if r < 0.08:
                entries.append({'path': p, 'symlink': random.choice(['nowhere', 'a', '.', 'docs'])})
            else:
                entries.append({'path': p, 'text': ''.join(random.choice('ab\n') for _ in range(random.randint(0, 20)))})
        if random.random() < 0.8:
            entries.append({'path': '.dockerignore', 'text': '\n'.join(random.choice(pats) for _ in range(random.randint(0, 6))) + '\n'})
        git = random.random() < 0.6 and not any(e['path'] == '.git' or e['path'].startswith('.git/') for e in entries)
        if git and random.random() < 0.8:
            entries.append({'path': '.gitignore', 'text': '\n'.join(random.choice(gpats) for _ in range(random.randint(1, 4))) + '\n'})
        g.build({'git': git, 'entries': entries}, d)
        want = g.source_digest(d)
        out = subprocess.run([LS, d], capture_output=True, text=True)
        got = out.stdout.strip().split('\n')[-1] if out.returncode == 0 else 'ERR ' + out.stderr
        if got != want:
            bad += 1
            print('MISMATCH', it, d, got, want)
            print(entries)
            d = None
    finally:
        if d: shutil.rmtree(d)
print('done, mismatches:', bad)
