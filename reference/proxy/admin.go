package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adminv1 "github.com/prism-suite/prism/proto/prism/admin/v1"
	"github.com/prism-suite/prism/reference/auth"
)

// The admin API (prism.admin.v1) on its own listener (Config.Admin):
// namespaces are created, updated and deleted while the proxy serves
// (live.go applies them), persist in the admin store (adminstore.go) and
// every change is written to the audit log (audit.go).
//
// Every admin call needs "authorization: Bearer <JWT>" verified like a data
// call's (the same issuer and keys): Unauthenticated without one or for an
// invalid one; PermissionDenied when the token's admin.role.claim does not
// hold admin.role.value.
//
// Namespaces from the YAML config stay as configured: the admin API lists
// them (source "config", revision 0) but refuses to change them
// (FailedPrecondition), and refuses to create an admin namespace with the
// name of one (AlreadyExists). A store namespace that has a config
// namespace's name (added to the file later) is not served; the proxy logs
// it.
//
// A change is validated by the same code as the YAML config, and whether
// its builtins are linked, before anything is written or applied: a
// refused change changes nothing. Every admin call first applies the
// store's current content (changes another proxy made), and a poll does so
// every admin.store.poll_interval, so proxies sharing a store file serve the
// same admin namespaces within that interval.

// adminState is the proxy's admin API.
type adminState struct {
	cfg   AdminConfig
	store *fileStore
	audit *auditLog
	srv   *grpc.Server
	lis   net.Listener
	// last is the store content applied last (the poll skips an unchanged
	// file).
	last []byte
	// failed remembers a stored revision that could not be applied, so the
	// poll logs it once.
	failed map[string]int64
	stop   chan struct{}
	done   chan struct{}
}

// setupAdmin opens the audit log and applies the store's namespaces; New
// calls it.
func (p *Proxy) setupAdmin() error {
	if p.cfg.Admin == nil {
		return nil
	}
	c := *p.cfg.Admin
	c.Store.File = p.cfg.resolve(c.Store.File)
	c.AuditLog = p.cfg.resolve(c.AuditLog)
	if c.Store.PollInterval == 0 {
		c.Store.PollInterval = DefaultAdminPollInterval
	}
	a := &adminState{cfg: c, store: &fileStore{path: c.Store.File}, failed: map[string]int64{}}
	if fi, err := os.Stat(filepath.Dir(c.Store.File)); err != nil || !fi.IsDir() {
		return fmt.Errorf("admin.store.file: %s: its folder does not exist", c.Store.File)
	}
	doc, raw, err := a.store.read()
	if err != nil {
		return fmt.Errorf("admin.store.file: %w", err)
	}
	if a.audit, err = openAudit(c.AuditLog); err != nil {
		return err
	}
	p.admin = a
	p.mu.Lock()
	p.reconcile(doc, raw)
	p.mu.Unlock()
	return nil
}

// listenAdmin serves the admin API; Listen calls it.
func (p *Proxy) listenAdmin(ctx context.Context) error {
	a := p.admin
	if a == nil {
		return nil
	}
	var err error
	if a.lis, err = net.Listen("tcp", a.cfg.Listen); err != nil {
		return fmt.Errorf("listen %s (admin.listen): %w", a.cfg.Listen, err)
	}
	a.srv = grpc.NewServer(grpc.ChainUnaryInterceptor(p.adminAuth), grpc.MaxRecvMsgSize(1<<20))
	adminv1.RegisterAdminServer(a.srv, &adminServer{p: p})
	go func() {
		if err := a.srv.Serve(a.lis); err != nil {
			p.served <- fmt.Errorf("serve admin: %w", err)
		}
	}()
	a.stop, a.done = make(chan struct{}), make(chan struct{})
	go p.pollStore(a.cfg.Store.PollInterval)
	p.log.Info("admin API is on", "admin", a.lis.Addr().String(), "store", a.cfg.Store.File, "audit_log", a.cfg.AuditLog,
		"role_claim", a.cfg.Role.Claim, "role_value", a.cfg.Role.Value)
	return nil
}

// AdminAddr is the admin API's address ("" when off).
func (p *Proxy) AdminAddr() string {
	if p.admin == nil || p.admin.lis == nil {
		return ""
	}
	return p.admin.lis.Addr().String()
}

// stopAdmin stops the admin API and its poll; Shutdown calls it.
func (p *Proxy) stopAdmin() {
	a := p.admin
	if a == nil {
		return
	}
	if a.srv != nil {
		a.srv.GracefulStop()
		close(a.stop)
		<-a.done
	}
	a.audit.close()
}

// pollStore applies the store's changes every interval.
func (p *Proxy) pollStore(interval time.Duration) {
	a := p.admin
	defer close(a.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		p.refresh()
	}
}

// reconcile makes the served admin namespaces those of doc; the caller
// holds p.mu. A stored namespace that cannot be applied (its spec is no
// longer valid here, e.g. its binary is gone) keeps its previous revision
// serving, if any, and is logged once.
func (p *Proxy) reconcile(doc storeDoc, raw []byte) {
	a := p.admin
	if raw != nil && bytes.Equal(raw, a.last) {
		return
	}
	a.last = raw
	rt := p.routes.Load()
	for _, name := range sortedKeys(doc.Namespaces) {
		sn := doc.Namespaces[name]
		cur := rt.byName[name]
		if cur != nil && cur.source == sourceConfig {
			if a.failed[name] != sn.Revision {
				a.failed[name] = sn.Revision
				p.log.Error("admin store: namespace has the name of a namespace of the config file, which stays", "namespace", name)
			}
			continue
		}
		if cur != nil && cur.revision == sn.Revision {
			continue
		}
		if err := p.applyStored(name, sn); err != nil {
			if a.failed[name] != sn.Revision {
				a.failed[name] = sn.Revision
				p.log.Error("admin store: namespace cannot be applied", "namespace", name, "revision", sn.Revision, "error", err.Error())
			}
			continue
		}
		delete(a.failed, name)
	}
	for _, name := range rt.order {
		if _, ok := doc.Namespaces[name]; !ok && rt.byName[name].source == sourceAdmin {
			p.remove(name)
			p.log.Info("admin namespace removed (admin store)", "namespace", name)
		}
	}
}

func (p *Proxy) applyStored(name string, sn storedNamespace) error {
	ns, err := p.parseSpec(sn.Spec)
	if err != nil {
		return err
	}
	if ns.Name != name {
		return fmt.Errorf("its spec names namespace %q", ns.Name)
	}
	pl, err := p.plan(ns, sourceAdmin, sn.Revision, sn.Spec)
	if err != nil {
		return err
	}
	p.commit(pl)
	p.log.Info("admin namespace applied (admin store)", "namespace", name, "revision", sn.Revision)
	return nil
}

// parseSpec validates a namespace spec as the admin API gets it.
func (p *Proxy) parseSpec(spec string) (Namespace, error) {
	ns, err := p.cfg.ParseNamespace([]byte(spec))
	if err != nil {
		return ns, err
	}
	return ns, p.checkNewNamespace("namespace ("+ns.Name+")", ns)
}

// adminAuth authenticates every admin call and checks the admin role.
func (p *Proxy) adminAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	tok, err := auth.BearerToken(md.Get(auth.AuthorizationKey))
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "the admin API needs one \"authorization: Bearer <token>\" with the admin role: %v", err)
	}
	pr, err := p.auth.a.Verify(ctx, tok)
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) {
			return nil, ae.GRPCStatus().Err()
		}
		return nil, status.FromContextError(err).Err()
	}
	role := p.admin.cfg.Role
	if !hasRole(pr, role) {
		err := status.Errorf(codes.PermissionDenied, "the token does not carry the admin role (claim %q holding %q)", role.Claim, role.Value)
		if act := auditAction(info.FullMethod); act != "" {
			p.auditOf(pr.Subject, AuditEntry{Action: act}, err)
		}
		return nil, err
	}
	return handler(auth.ContextWithPrincipal(ctx, pr), req)
}

// hasRole reports whether the principal's role claim holds the value: as
// the string, one word of a space-separated string, or an array element.
func hasRole(pr *auth.Principal, role AdminRole) bool {
	v, ok := pr.Claim(role.Claim)
	if !ok {
		return false
	}
	switch v := v.(type) {
	case string:
		return slices.Contains(strings.Fields(v), role.Value)
	case []any:
		return slices.Contains(v, any(role.Value))
	}
	return false
}

func auditAction(full string) string {
	switch full {
	case adminv1.Admin_CreateNamespace_FullMethodName:
		return "namespace.create"
	case adminv1.Admin_UpdateNamespace_FullMethodName:
		return "namespace.update"
	case adminv1.Admin_DeleteNamespace_FullMethodName:
		return "namespace.delete"
	case adminv1.Admin_DrainPlugin_FullMethodName:
		return "plugin.drain"
	case adminv1.Admin_RestartPlugin_FullMethodName:
		return "plugin.restart"
	}
	return ""
}

// auditOf writes e with its subject and outcome; a failure to write is
// logged (the change is applied already).
func (p *Proxy) auditOf(subject string, e AuditEntry, err error) {
	e.Subject, e.Outcome = subject, "ok"
	if err != nil {
		e.Outcome, e.Error = status.Code(err).String(), status.Convert(err).Message()
	}
	if werr := p.admin.audit.write(e); werr != nil {
		p.log.Error("admin audit log", "error", werr.Error(), "action", e.Action, "namespace", e.Namespace)
	}
}

func subjectOf(ctx context.Context) string {
	if pr, ok := auth.PrincipalFromContext(ctx); ok {
		return pr.Subject
	}
	return ""
}

// adminServer implements prism.admin.v1.Admin.
type adminServer struct {
	adminv1.UnimplementedAdminServer
	p *Proxy
}

// invalid turns a validation error into InvalidArgument with every
// problem, one per line.
// parseAudited parses the spec of a create or update and starts its audit
// entry (action, the namespace, the spec with secrets redacted); a spec that
// does not parse is audited as refused and returned as InvalidArgument.
func (p *Proxy) parseAudited(ctx context.Context, action, spec string) (Namespace, AuditEntry, error) {
	e := AuditEntry{Action: action, After: redactedSpec(spec)}
	ns, err := p.parseSpec(spec)
	e.Namespace = ns.Name
	if err != nil {
		err = invalid(err)
		p.auditOf(subjectOf(ctx), e, err)
	}
	return ns, e, err
}

func invalid(err error) error {
	return status.Error(codes.InvalidArgument, err.Error())
}

// change runs one namespace change under p.mu and the store's lock: fn gets
// the store (with every stored change applied first) and returns the plan to
// publish (nil for a delete) or an error. The plan is published only when
// the store was written. It returns the fresh hosts of the published plan.
func (p *Proxy) change(fn func(doc *storeDoc) (*nsPlan, error)) ([]*host, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, status.Error(codes.Unavailable, "the proxy is shutting down")
	}
	var pl *nsPlan
	err := p.admin.store.update(func(doc *storeDoc) error {
		p.reconcile(*doc, nil)
		var err error
		pl, err = fn(doc)
		return err
	})
	if err != nil {
		if pl != nil {
			pl.discard()
		}
		if _, ok := status.FromError(err); !ok {
			err = status.Error(codes.Internal, err.Error())
		}
		return nil, err
	}
	p.admin.last = nil // the store changed: the next poll looks again
	if pl == nil {
		return nil, nil
	}
	if pl.ns == nil {
		p.remove(pl.remove)
		return nil, nil
	}
	p.commit(pl)
	return pl.fresh, nil
}

// settle waits (bounded by ctx) until the hosts have started or failed
// their first attempt, so a created namespace is routable when the call
// returns.
func settle(ctx context.Context, hosts []*host) {
	for _, h := range hosts {
		select {
		case <-h.settled:
		case <-ctx.Done():
			return
		}
	}
}

func (s *adminServer) CreateNamespace(ctx context.Context, req *adminv1.CreateNamespaceRequest) (*adminv1.CreateNamespaceResponse, error) {
	p := s.p
	ns, e, err := p.parseAudited(ctx, "namespace.create", req.GetSpec())
	if err != nil {
		return nil, err
	}
	fresh, err := p.change(func(doc *storeDoc) (*nsPlan, error) {
		if cur := p.lookup(ns.Name); cur != nil && cur.source == sourceConfig {
			return nil, status.Errorf(codes.AlreadyExists, "namespace %q is defined in the proxy's config file; the admin API cannot create one of that name", ns.Name)
		}
		if _, ok := doc.Namespaces[ns.Name]; ok {
			return nil, status.Errorf(codes.AlreadyExists, "namespace %q exists; update it with the revision you read", ns.Name)
		}
		pl, err := p.plan(ns, sourceAdmin, 1, req.GetSpec())
		if err != nil {
			return nil, invalid(err)
		}
		doc.Namespaces[ns.Name] = storedNamespace{Revision: 1, Spec: req.GetSpec()}
		return pl, nil
	})
	if err == nil {
		e.Revision = 1
	}
	p.auditOf(subjectOf(ctx), e, err)
	if err != nil {
		return nil, err
	}
	settle(ctx, fresh)
	return &adminv1.CreateNamespaceResponse{Namespace: namespaceOut(p.lookup(ns.Name))}, nil
}

func (s *adminServer) UpdateNamespace(ctx context.Context, req *adminv1.UpdateNamespaceRequest) (*adminv1.UpdateNamespaceResponse, error) {
	p := s.p
	ns, e, err := p.parseAudited(ctx, "namespace.update", req.GetSpec())
	if err != nil {
		return nil, err
	}
	var rev int64
	fresh, err := p.change(func(doc *storeDoc) (*nsPlan, error) {
		if err := s.changeable(doc, ns.Name, req.GetRevision(), "update"); err != nil {
			return nil, err
		}
		cur := doc.Namespaces[ns.Name]
		e.Before = redactedSpec(cur.Spec)
		rev = cur.Revision + 1
		pl, err := p.plan(ns, sourceAdmin, rev, req.GetSpec())
		if err != nil {
			return nil, invalid(err)
		}
		doc.Namespaces[ns.Name] = storedNamespace{Revision: rev, Spec: req.GetSpec()}
		return pl, nil
	})
	if err == nil {
		e.Revision = rev
	}
	p.auditOf(subjectOf(ctx), e, err)
	if err != nil {
		return nil, err
	}
	settle(ctx, fresh)
	return &adminv1.UpdateNamespaceResponse{Namespace: namespaceOut(p.lookup(ns.Name))}, nil
}

// changeable checks that namespace name can be changed at revision rev
// (0: any revision, for a delete only).
func (s *adminServer) changeable(doc *storeDoc, name string, rev int64, verb string) error {
	cur, ok := doc.Namespaces[name]
	if !ok {
		if ns := s.p.lookup(name); ns != nil && ns.source == sourceConfig {
			return status.Errorf(codes.FailedPrecondition, "namespace %q is defined in the proxy's config file; the admin API cannot %s it", name, verb)
		}
		return status.Errorf(codes.NotFound, "namespace %q does not exist", name)
	}
	if (rev != 0 || verb == "update") && rev != cur.Revision {
		return status.Errorf(codes.Aborted, "revision: %d is not the current revision %d of namespace %q (another change came first); read it again and retry", rev, cur.Revision, name)
	}
	return nil
}

func (s *adminServer) DeleteNamespace(ctx context.Context, req *adminv1.DeleteNamespaceRequest) (*adminv1.DeleteNamespaceResponse, error) {
	p := s.p
	e := AuditEntry{Action: "namespace.delete", Namespace: req.GetName()}
	var err error
	if !nameRE.MatchString(req.GetName()) {
		err = status.Errorf(codes.InvalidArgument, "name: %q is not a namespace name (1-128 letters, digits, '.', '_' or '-', starting with a letter or digit)", req.GetName())
	} else {
		_, err = p.change(func(doc *storeDoc) (*nsPlan, error) {
			if err := s.changeable(doc, req.GetName(), req.GetRevision(), "delete"); err != nil {
				return nil, err
			}
			e.Before = redactedSpec(doc.Namespaces[req.GetName()].Spec)
			delete(doc.Namespaces, req.GetName())
			return &nsPlan{remove: req.GetName()}, nil
		})
	}
	p.auditOf(subjectOf(ctx), e, err)
	if err != nil {
		return nil, err
	}
	return &adminv1.DeleteNamespaceResponse{}, nil
}

func namespaceOut(ns *namespace) *adminv1.Namespace {
	if ns == nil {
		return nil
	}
	out := &adminv1.Namespace{Name: ns.Name, Spec: ns.spec, Revision: ns.revision, Source: ns.source}
	if ns.source == sourceConfig {
		out.Spec = configSpec(ns.Namespace)
	}
	return out
}

// refresh applies the store's current content (before a read, and every
// poll). It reads the file under p.mu: a content read before a change of
// this proxy's was written must never be applied after it.
func (p *Proxy) refresh() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	doc, raw, err := p.admin.store.read()
	if err != nil {
		p.log.Error("admin store", "error", err.Error())
		return
	}
	p.reconcile(doc, raw)
}

func (s *adminServer) GetNamespace(_ context.Context, req *adminv1.GetNamespaceRequest) (*adminv1.GetNamespaceResponse, error) {
	s.p.refresh()
	ns := s.p.lookup(req.GetName())
	if ns == nil {
		return nil, status.Errorf(codes.NotFound, "namespace %q does not exist", req.GetName())
	}
	return &adminv1.GetNamespaceResponse{Namespace: namespaceOut(ns)}, nil
}

func (s *adminServer) ListNamespaces(context.Context, *adminv1.ListNamespacesRequest) (*adminv1.ListNamespacesResponse, error) {
	s.p.refresh()
	rt := s.p.routes.Load()
	out := &adminv1.ListNamespacesResponse{}
	names := slices.Sorted(slices.Values(rt.order))
	for _, n := range names {
		out.Namespaces = append(out.Namespaces, namespaceOut(rt.byName[n]))
	}
	return out, nil
}

// configSpec renders a config namespace in the YAML shape.
func configSpec(ns Namespace) string {
	b, err := yaml.Marshal(ns)
	if err != nil {
		return ""
	}
	return string(b)
}

func (s *adminServer) Status(context.Context, *adminv1.StatusRequest) (*adminv1.StatusResponse, error) {
	p := s.p
	p.refresh()
	out := &adminv1.StatusResponse{}
	rt := p.routes.Load()
	st := p.Status()
	for _, n := range st.Namespaces {
		ns := rt.byName[n.Name]
		o := &adminv1.NamespaceStatus{Name: n.Name, Serving: n.Serving}
		if ns != nil {
			o.Source, o.Revision = ns.source, ns.revision
		}
		for _, sl := range n.Slots {
			if !slices.Contains(o.Plugins, sl.Process) {
				o.Plugins = append(o.Plugins, sl.Process)
			}
		}
		out.Namespaces = append(out.Namespaces, o)
	}
	p.mu.Lock()
	hosts := slices.Clone(p.hosts)
	p.mu.Unlock()
	for _, h := range hosts {
		state, pid, restarts, lastErr, health := h.snapshot()
		out.Plugins = append(out.Plugins, &adminv1.PluginStatus{Id: h.id, Mode: modeOf(h.builtin != nil),
			Binary: p.cfg.resolve(h.spec.Binary), Builtin: h.spec.Builtin, State: string(state), Health: health,
			Pid: int32(pid), Restarts: int32(restarts), Error: lastErr, Namespaces: h.namespaceNames()})
	}
	return out, nil
}

// pluginOp runs a drain or restart of host id under p.mu.
func (s *adminServer) pluginOp(ctx context.Context, action, id string, restart bool) error {
	p := s.p
	e := AuditEntry{Action: action, Plugin: id}
	err := func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			return status.Error(codes.Unavailable, "the proxy is shutting down")
		}
		h := p.byID[id]
		if h == nil {
			return status.Errorf(codes.NotFound, "id: no plugin host %q (see Status)", id)
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.DrainTimeout)
		h.stop(sctx)
		cancel()
		if restart {
			h.start()
		}
		return nil
	}()
	p.auditOf(subjectOf(ctx), e, err)
	if err == nil && restart {
		if h := p.hostByID(id); h != nil {
			settle(ctx, []*host{h})
		}
	}
	return err
}

func (s *adminServer) DrainPlugin(ctx context.Context, req *adminv1.DrainPluginRequest) (*adminv1.DrainPluginResponse, error) {
	if err := s.pluginOp(ctx, "plugin.drain", req.GetId(), false); err != nil {
		return nil, err
	}
	return &adminv1.DrainPluginResponse{}, nil
}

func (s *adminServer) RestartPlugin(ctx context.Context, req *adminv1.RestartPluginRequest) (*adminv1.RestartPluginResponse, error) {
	if err := s.pluginOp(ctx, "plugin.restart", req.GetId(), true); err != nil {
		return nil, err
	}
	return &adminv1.RestartPluginResponse{}, nil
}
