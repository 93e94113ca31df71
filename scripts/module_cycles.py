"""Lists the import cycles between the modules of a Rust crate's source; exits 1 when there is one.

A module depends on the modules whose items it names (`use` paths and paths in code, outside
`#[cfg(test)] mod tests`); a `pub use` is a facade, not a dependency, and a path through a
re-export counts as a dependency on the module that defines the item. Usage:
`python3 scripts/module_cycles.py eventbus/src [-v]` (`-v` lists each cycle's edges).
"""
import os,re,sys
root=sys.argv[1]
assert os.path.isdir(root), f'no such directory: {root}'
mods={}
for d,_,fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p=os.path.join(d,f); rel=os.path.relpath(p,root)[:-3].split(os.sep)
        if rel[-1] in('mod','lib'): rel=rel[:-1]
        mods[tuple(rel)]=p
srcs={}
for m,p in mods.items():
    s=open(p).read()
    s=re.sub(r'#\[cfg\(test\)\]\s*mod tests\s*\{.*','',s,flags=re.S)
    s=re.sub(r'//[^\n]*','',s)
    srcs[m]=s
def use_items(src, public):
    out=[]
    kw=r'pub(?:\([^)]*\))?\s+use' if public else r'(?:pub(?:\([^)]*\))?\s+)?use'
    for u in re.finditer(kw+r'\s+([^;]*);',src,re.S):
        body=re.sub(r'\s+','',u.group(1))
        out.extend(expand(body))
    return out
def expand(body):
    m=re.match(r'^(.*?)::\{(.*)\}$',body)
    if not m:
        name=body.split(' as ')[0]
        alias=body.split('as')[-1] if 'as' in body else body.split('::')[-1]
        return [(name.split('::'),body.split('::')[-1])]
    pre=m.group(1); inner=m.group(2)
    parts=[];depth=0;cur=''
    for ch in inner:
        if ch=='{':depth+=1
        if ch=='}':depth-=1
        if ch==',' and depth==0: parts.append(cur);cur=''
        else: cur+=ch
    if cur: parts.append(cur)
    res=[]
    for p in parts:
        if p=='self': res.append((pre.split('::'),pre.split('::')[-1])); continue
        for segs,last in expand(p): res.append((pre.split('::')+segs,last))
    return res
reexp={}
for m,s in srcs.items():
    for segs,last in use_items(s,True):
        reexp[(m,segs[-1])]=segs
def base_of(cur,segs):
    if segs[0]=='crate': return [],segs[1:]
    if segs[0]=='super':
        b=list(cur)
        while segs and segs[0]=='super': b=b[:-1]; segs=segs[1:]
        return b,segs
    if segs[0]=='self': return list(cur),segs[1:]
    if tuple(list(cur)+[segs[0]]) in mods: return list(cur),segs
    return None,None
def resolve(cur,segs,depth=0):
    b,rest=base_of(cur,segs)
    if b is None or depth>10: return None
    m=tuple(b)
    i=0
    while i<len(rest) and tuple(list(m)+[rest[i]]) in mods:
        m=tuple(list(m)+[rest[i]]); i+=1
    if i<len(rest) and (m,rest[i]) in reexp:
        r=resolve(m,reexp[(m,rest[i])]+rest[i+1:],depth+1)
        if r: return r
    return m
edges={}
pat=re.compile(r'(?<![\w:])((?:crate|super|self|[a-z_]\w*)(?:::\w+)+)')
for m,s in srcs.items():
    private=re.sub(r'pub(?:\([^)]*\))?\s+use\s+[^;]*;','',s)
    for segs,_ in use_items(private,False):
        r=resolve(m,segs)
        if r is not None and r!=m: edges.setdefault(m,set()).add(r)
    body=re.sub(r'(?:pub(?:\([^)]*\))?\s+)?use\s+[^;]*;','',s)
    for x in pat.finditer(body):
        r=resolve(m,x.group(1).split('::'))
        if r is not None and r!=m: edges.setdefault(m,set()).add(r)
name=lambda t:'::'.join(t) or 'crate'
idx={};low={};st=[];on=set();res=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    idx[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in edges.get(v,()):
        if w not in idx: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],idx[w])
    if low[v]==idx[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: res.append(comp)
for v in sorted(mods):
    if v not in idx: sc(v)
for comp in res:
    print(len(comp), sorted(name(x) for x in comp))
    if '-v' in sys.argv:
        s=set(comp)
        for a in sorted(comp):
            print('   ',name(a),'->',sorted(name(b) for b in edges.get(a,()) if b in s))
sys.exit(1 if res else 0)
