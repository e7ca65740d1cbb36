out.o: a.c \
  "quoted name.h" b\#c.h
out.o: more.h
