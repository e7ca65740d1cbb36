#!/usr/bin/env python3
"""Generate the data sets that benches/compare.sh measures.

usage: gen_data.py small DIR N_FILES TOTAL_MB   many small files (a source-tree shape)
       gen_data.py big DIR N_FILES MB_EACH      a few large files
       gen_data.py sources DIR N_FILES          N .c files of 1-16 KB (uniform) in 200 directories
       gen_data.py cproj DIR N_TARGETS          a C project with a Makefile and relocache.toml
       gen_data.py copyproj DIR N_TARGETS       the same shape, each "compile" a cp (for big no-op builds)
       gen_data.py outputs DIR N_FILES TOTAL_MB a project whose one target writes N files
       gen_data.py tplproj DIR N_FILES          a C project in one template with depfiles, and its Makefile
       gen_data.py zstdproj DIR ZSTD_LIB FORM   zstd's lib/ (common, compress, decompress, dictBuilder:
                                                31 objects and the archive, 32 targets) with its
                                                Makefile; FORM is `tpl` (one template) or `plain`
                                                (31 hand-written targets), both with gcc depfiles
Content is pseudo-random but half-compressible, like object files and sources.
"""
import os
import random
import sys


def blob(rng, size):
    # Half random bytes, half repeated text: compresses about 2x, like real artifacts.
    half = size // 2
    text = (b"int symbol_%d = %d;\n" % (rng.randrange(1 << 30), rng.randrange(1 << 30))) * (half // 24 + 1)
    return rng.randbytes(size - half) + text[:half]


def small(d, n, total_mb):
    rng = random.Random(1)
    avg = total_mb * 1024 * 1024 // n
    for i in range(n):
        sub = os.path.join(d, "src", "d%03d" % (i % 500), "e%02d" % (i % 7))
        os.makedirs(sub, exist_ok=True)
        size = max(16, int(rng.expovariate(1 / avg)))
        with open(os.path.join(sub, "f%06d.c" % i), "wb") as f:
            f.write(blob(rng, size))


def sources(d, n):
    rng = random.Random(3)
    for i in range(n):
        sub = os.path.join(d, "src", "d%03d" % (i % 200))
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, "f%06d.c" % i), "wb") as f:
            f.write(blob(rng, rng.randrange(1024, 16 * 1024 + 1)))


def big(d, n, mb):
    rng = random.Random(2)
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        with open(os.path.join(d, "big%d.bin" % i), "wb") as f:
            for _ in range(mb):
                f.write(blob(rng, 1 << 20))


def cproj(d, n, copy=False):
    os.makedirs(os.path.join(d, "src"), exist_ok=True)
    os.makedirs(os.path.join(d, "build"), exist_ok=True)
    objs = []
    man = ['[project]\nname = "bench-c"\n\n[defaults]\ntools = ["cc"]\n']
    mk = ["CC ?= cc\nall: build/app\n"]
    for i in range(n):
        body = "\n".join(
            "int f%d_%d(int x) { int y = x; for (int k = 0; k < %d; k++) y = y * 31 + k; return y; }" % (i, j, j + 3)
            for j in range(40)
        )
        with open(os.path.join(d, "src", "m%03d.c" % i), "w") as f:
            f.write('#include "common.h"\n' + body + "\nint m%d(void) { return f%d_1(%d); }\n" % (i, i, i))
        objs.append("build/m%03d.o" % i)
        compile_cmd = '"cp", "src/m%03d.c"' % i if copy else '"cc", "-O1", "-Isrc", "-c", "src/m%03d.c", "-o"' % i
        man.append(
            '[target.m%03d]\ncommand = [%s, "build/m%03d.o"]\n'
            'inputs = ["src/m%03d.c", "src/common.h"]\noutputs = ["build/m%03d.o"]\n' % (i, compile_cmd, i, i, i)
        )
        rule = "cp $< $@" if copy else "$(CC) -O1 -Isrc -c $< -o $@"
        mk.append("build/m%03d.o: src/m%03d.c src/common.h\n\t%s\n" % (i, i, rule))
    with open(os.path.join(d, "src", "common.h"), "w") as f:
        f.write("#pragma once\n" + "".join("int m%d(void);\n" % i for i in range(n)))
    with open(os.path.join(d, "src", "main.c"), "w") as f:
        f.write('#include "common.h"\nint main(void) { int s = 0;\n' + "".join("s += m%d();\n" % i for i in range(n)) + "return s & 1; }\n")
    if copy:
        link = 'run = "cat src/main.c %s > build/app"' % " ".join(objs)
    else:
        link = 'command = ["cc", "-Isrc", "src/main.c", %s, "-o", "build/app"]' % ", ".join('"%s"' % o for o in objs)
    man.append(
        '[target.app]\n%s\ninputs = ["src/main.c", "src/common.h"]\n'
        "deps = [%s]\noutputs = [\"build/app\"]\n" % (link, ", ".join('"m%03d"' % i for i in range(n)))
    )
    link_rule = "cat src/main.c %s > build/app" if copy else "$(CC) -Isrc src/main.c %s -o build/app"
    mk.append("build/app: src/main.c %s\n\t%s\n" % (" ".join(objs), link_rule % " ".join(objs)))
    with open(os.path.join(d, "relocache.toml"), "w") as f:
        f.write("\n".join(man))
    with open(os.path.join(d, "Makefile"), "w") as f:
        f.write("\n".join(mk))
    with open(os.path.join(d, ".gitignore"), "w") as f:
        f.write("build/\n")


# The templated C project (issue 18): N_FILES .c files in a few directories,
# N_FILES / 5 headers each included by exactly 10 of them, every file also
# including system headers. relocache builds it from one template whose
# commands write gcc depfiles; make from one pattern rule that -includes
# them. compare.sh edits include/h000.h, read by exactly 10 objects.
TPL_MANIFEST = """\
[project]
name = "bench-tpl"

[target.obj]
foreach = "src/**/*.c"
run = "mkdir -p build/{dir} && cc -O1 -Iinclude -c {path} -o build/{dir}/{stem}.o -MD -MF build/{dir}/{stem}.d"
depfile = "build/{dir}/{stem}.d"
outputs = ["build/{dir}/{stem}.o"]

[target.app]
run = "cc main.c {outputs:obj} -o build/app"
inputs = ["main.c"]
deps = ["obj"]
outputs = ["build/app"]
"""

TPL_MAKEFILE = """\
CC ?= cc
SRCS := $(wildcard src/*/*.c)
OBJS := $(SRCS:%.c=build/%.o)

all: build/app

build/%.o: %.c
\t@mkdir -p $(@D)
\t$(CC) -O1 -Iinclude -MMD -c $< -o $@

build/app: main.c $(OBJS)
\t$(CC) main.c $(OBJS) -o $@

-include $(OBJS:.o=.d)
"""


def tplproj(d, n):
    if n % 5:
        sys.exit("tplproj: N_FILES must be a multiple of 5")
    n_headers = n // 5
    # File i includes headers i % H and (7i + 1) % H: each header is the first
    # of 5 files and the second of 5 others (7 is prime to H = 40), and never
    # both of one file (6i + 1 is odd, so not 0 mod an even H).
    includes = [(i % n_headers, (7 * i + 1) % n_headers) for i in range(n)]
    os.makedirs(os.path.join(d, "include"), exist_ok=True)
    for h in range(n_headers):
        with open(os.path.join(d, "include", "h%03d.h" % h), "w") as f:
            f.write(
                "#pragma once\n#include <stdint.h>\n#define H%03d_K %d\n"
                "static inline int32_t h%03d(int32_t x) { return x * H%03d_K + %d; }\n" % (h, h + 3, h, h, h)
            )
    for i in range(n):
        a, b = includes[i]
        sub = os.path.join(d, "src", "d%d" % (i % 5))
        os.makedirs(sub, exist_ok=True)
        body = "\n".join(
            "int f%d_%d(int x) { int y = h%03d(x); for (int k = 0; k < %d; k++) y = y * 31 + h%03d(k); return y; }"
            % (i, j, a, j + 3, b)
            for j in range(40)
        )
        with open(os.path.join(sub, "m%03d.c" % i), "w") as f:
            f.write(
                '#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n'
                '#include "h%03d.h"\n#include "h%03d.h"\n' % (a, b)
                + body
                + "\nint m%d(void) { return f%d_1(%d); }\n" % (i, i, i)
            )
    readers = sum(1 for a, b in includes if 0 in (a, b))
    assert readers == 10, "include/h000.h is read by %d files, not 10" % readers
    with open(os.path.join(d, "main.c"), "w") as f:
        f.write(
            "".join("int m%d(void);\n" % i for i in range(n))
            + "int main(void) { int s = 0;\n"
            + "".join("s += m%d();\n" % i for i in range(n))
            + "return s & 1; }\n"
        )
    with open(os.path.join(d, "relocache.toml"), "w") as f:
        f.write(TPL_MANIFEST)
    with open(os.path.join(d, "Makefile"), "w") as f:
        f.write(TPL_MAKEFILE)
    with open(os.path.join(d, ".gitignore"), "w") as f:
        f.write("build/\n")


# The real zstd library (issue 19): 31 objects and the archive, built from
# zstd's own sources with gcc depfiles, by relocache (one template, or one
# table per object as a project without templates writes it) and by make (a
# pattern rule that -includes the depfiles).
ZSTD_DIRS = ["common", "compress", "decompress", "dictBuilder"]
ZSTD_RUN = "mkdir -p build/{dir} && cc -O0 -c {path} -o build/{dir}/{stem}.o -MD -MF build/{dir}/{stem}.d"

ZSTD_MAKEFILE = """\
SRCS := $(wildcard lib/*/*.c lib/*/*.S)
OBJS := $(patsubst %,build/%.o,$(basename $(SRCS)))

all: build/libzstd.a

build/%.o: %.c
\t@mkdir -p $(@D)
\tcc -O0 -c $< -o $@ -MD -MF build/$*.d

build/%.o: %.S
\t@mkdir -p $(@D)
\tcc -O0 -c $< -o $@ -MD -MF build/$*.d

build/libzstd.a: $(OBJS)
\tar rcsD $@ $(OBJS)

-include $(OBJS:.o=.d)
"""


def zstdproj(d, lib, form):
    import shutil

    for sub in ZSTD_DIRS:
        shutil.copytree(os.path.join(lib, sub), os.path.join(d, "lib", sub))
    for f in ["zstd.h", "zstd_errors.h", "zdict.h"]:
        shutil.copy(os.path.join(lib, f), os.path.join(d, "lib", f))
    srcs = sorted(
        "lib/%s/%s" % (sub, f)
        for sub in ZSTD_DIRS
        for f in os.listdir(os.path.join(d, "lib", sub))
        if f.endswith((".c", ".S"))
    )
    man = ['[project]\nname = "bench-zstd"\n\n[defaults]\ntools = ["cc"]\n']
    if form == "tpl":
        man.append(
            '[target.obj]\nforeach = ["lib/**/*.c", "lib/**/*.S"]\nrun = "%s"\n'
            'depfile = "build/{dir}/{stem}.d"\noutputs = ["build/{dir}/{stem}.o"]\n' % ZSTD_RUN
        )
        deps, objs = '["obj"]', "{outputs:obj}"
    elif form == "plain":
        names = []
        for src in srcs:
            dirname, base = os.path.split(src)
            stem = os.path.splitext(base)[0]
            name = "%s_%s" % (os.path.basename(dirname), stem)
            names.append(name)
            run = ZSTD_RUN.replace("{path}", src).replace("{dir}", dirname).replace("{stem}", stem)
            man.append(
                '[target.%s]\nrun = "%s"\ninputs = ["%s"]\ndepfile = "build/%s/%s.d"\n'
                'outputs = ["build/%s/%s.o"]\n' % (name, run, src, dirname, stem, dirname, stem)
            )
        deps = "[%s]" % ", ".join('"%s"' % n for n in names)
        objs = " ".join("build/%s.o" % os.path.splitext(s)[0] for s in srcs)
    else:
        sys.exit("zstdproj: FORM is tpl or plain")
    man.append(
        '[target.lib]\nrun = "ar rcsD build/libzstd.a %s"\ndeps = %s\noutputs = ["build/libzstd.a"]\n'
        % (objs, deps)
    )
    with open(os.path.join(d, "relocache.toml"), "w") as f:
        f.write("\n".join(man))
    with open(os.path.join(d, "Makefile"), "w") as f:
        f.write(ZSTD_MAKEFILE)
    with open(os.path.join(d, ".gitignore"), "w") as f:
        f.write("build/\n")


def outputs(d, n, total_mb):
    small(os.path.join(d, "data"), n, total_mb)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "relocache.toml"), "w") as f:
        f.write('[target.copy]\nrun = "cp -r data/src out"\ninputs = ["data/**"]\noutputs = ["out"]\n')


if __name__ == "__main__":
    kind, d = sys.argv[1], sys.argv[2]
    args = [a if kind == "zstdproj" else int(a) for a in sys.argv[3:]]
    copyproj = lambda d, n: cproj(d, n, copy=True)
    {"small": small, "sources": sources, "big": big, "cproj": cproj, "copyproj": copyproj, "outputs": outputs, "tplproj": tplproj, "zstdproj": zstdproj}[kind](d, *args)
