from pkg.util import f
print(f())
