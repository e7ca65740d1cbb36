build/greet.o: src/greet.c /usr/include/stdc-predef.h src/demo.h
