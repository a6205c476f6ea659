package sdk

import (
	"context"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/prism-suite/prism/proto/capability"
	keyvaluev1 "github.com/prism-suite/prism/proto/prism/keyvalue/v1"
)

// keyValueService serves prism.keyvalue.v1 over a driver: it admits the call,
// validates input against the driver's limits, calls the driver and maps its
// errors to status codes.
type keyValueService struct {
	keyvaluev1.UnimplementedKeyValueServer
	s *Server
}

func notDeclared(c capability.Name) error {
	return status.Errorf(codes.Unimplemented, "%s is not declared by this plugin", c)
}

// ValidateKey checks a key against the limits; field names the request field.
func ValidateKey(field, key string, lim Limits) error {
	lim = lim.withDefaults()
	switch {
	case key == "":
		return status.Errorf(codes.InvalidArgument, "%s: must not be empty", field)
	case int64(len(key)) > lim.MaxKeyBytes:
		return status.Errorf(codes.InvalidArgument, "%s: %d bytes exceeds the limit of %d bytes", field, len(key), lim.MaxKeyBytes)
	case !utf8.ValidString(key):
		return status.Errorf(codes.InvalidArgument, "%s: must be valid UTF-8", field)
	}
	return nil
}

func validateValue(field string, v []byte, lim Limits) error {
	lim = lim.withDefaults()
	if int64(len(v)) > lim.MaxValueBytes {
		return status.Errorf(codes.InvalidArgument, "%s: %d bytes exceeds the limit of %d bytes", field, len(v), lim.MaxValueBytes)
	}
	return nil
}

// ttlOf converts an optional TTL; a present TTL must be at least a millisecond.
func ttlOf(field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "%s: %v", field, err)
	}
	ttl := d.AsDuration()
	if ttl < time.Millisecond {
		return 0, status.Errorf(codes.InvalidArgument, "%s: must be at least 1ms, got %v", field, ttl)
	}
	return ttl, nil
}

func (k *keyValueService) basic() KeyValueBasic { return k.s.driver.(KeyValueBasic) }

func (k *keyValueService) call(fn func(lim Limits) error) error {
	leave, err := k.s.enter()
	if err != nil {
		return err
	}
	defer leave()
	return ToStatus(fn(k.s.driver.Limits()))
}

func (k *keyValueService) Set(ctx context.Context, req *keyvaluev1.SetRequest) (*keyvaluev1.SetResponse, error) {
	err := k.call(func(lim Limits) error {
		if err := ValidateKey("key", req.GetKey(), lim); err != nil {
			return err
		}
		if err := validateValue("value", req.GetValue(), lim); err != nil {
			return err
		}
		ttl, err := ttlOf("ttl", req.GetTtl())
		if err != nil {
			return err
		}
		if ttl > 0 {
			t, ok := k.s.driver.(KeyValueTTL)
			if !ok {
				return notDeclared(capability.KeyValueTTL)
			}
			return t.SetWithTTL(ctx, req.GetKey(), req.GetValue(), ttl)
		}
		return k.basic().Set(ctx, req.GetKey(), req.GetValue())
	})
	if err != nil {
		return nil, err
	}
	return &keyvaluev1.SetResponse{}, nil
}

func (k *keyValueService) Get(ctx context.Context, req *keyvaluev1.GetRequest) (*keyvaluev1.GetResponse, error) {
	resp := &keyvaluev1.GetResponse{}
	err := k.call(func(lim Limits) error {
		if err := ValidateKey("key", req.GetKey(), lim); err != nil {
			return err
		}
		v, err := k.basic().Get(ctx, req.GetKey())
		resp.Value = v
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (k *keyValueService) Delete(ctx context.Context, req *keyvaluev1.DeleteRequest) (*keyvaluev1.DeleteResponse, error) {
	resp := &keyvaluev1.DeleteResponse{}
	err := k.call(func(lim Limits) error {
		if err := ValidateKey("key", req.GetKey(), lim); err != nil {
			return err
		}
		existed, err := k.basic().Delete(ctx, req.GetKey())
		resp.Existed = existed
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (k *keyValueService) Exists(ctx context.Context, req *keyvaluev1.ExistsRequest) (*keyvaluev1.ExistsResponse, error) {
	resp := &keyvaluev1.ExistsResponse{}
	err := k.call(func(lim Limits) error {
		if err := ValidateKey("key", req.GetKey(), lim); err != nil {
			return err
		}
		ok, err := k.basic().Exists(ctx, req.GetKey())
		resp.Exists = ok
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (k *keyValueService) ttlDriver() (KeyValueTTL, error) {
	t, ok := k.s.driver.(KeyValueTTL)
	if !ok {
		return nil, notDeclared(capability.KeyValueTTL)
	}
	return t, nil
}

func (k *keyValueService) Expire(ctx context.Context, req *keyvaluev1.ExpireRequest) (*keyvaluev1.ExpireResponse, error) {
	err := k.call(func(lim Limits) error {
		t, err := k.ttlDriver()
		if err != nil {
			return err
		}
		if err := ValidateKey("key", req.GetKey(), lim); err != nil {
			return err
		}
		if req.GetTtl() == nil {
			return status.Error(codes.InvalidArgument, "ttl: must be set")
		}
		ttl, err := ttlOf("ttl", req.GetTtl())
		if err != nil {
			return err
		}
		return t.Expire(ctx, req.GetKey(), ttl)
	})
	if err != nil {
		return nil, err
	}
	return &keyvaluev1.ExpireResponse{}, nil
}

func (k *keyValueService) GetTTL(ctx context.Context, req *keyvaluev1.GetTTLRequest) (*keyvaluev1.GetTTLResponse, error) {
	resp := &keyvaluev1.GetTTLResponse{}
	err := k.call(func(lim Limits) error {
		t, err := k.ttlDriver()
		if err != nil {
			return err
		}
		if err := ValidateKey("key", req.GetKey(), lim); err != nil {
			return err
		}
		remaining, has, err := t.TTL(ctx, req.GetKey())
		resp.HasExpiry = has
		if has {
			resp.Ttl = durationpb.New(remaining)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (k *keyValueService) Persist(ctx context.Context, req *keyvaluev1.PersistRequest) (*keyvaluev1.PersistResponse, error) {
	resp := &keyvaluev1.PersistResponse{}
	err := k.call(func(lim Limits) error {
		t, err := k.ttlDriver()
		if err != nil {
			return err
		}
		if err := ValidateKey("key", req.GetKey(), lim); err != nil {
			return err
		}
		had, err := t.Persist(ctx, req.GetKey())
		resp.HadExpiry = had
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (k *keyValueService) Scan(ctx context.Context, req *keyvaluev1.ScanRequest) (*keyvaluev1.ScanResponse, error) {
	resp := &keyvaluev1.ScanResponse{}
	err := k.call(func(lim Limits) error {
		sc, ok := k.s.driver.(KeyValueScan)
		if !ok {
			return notDeclared(capability.KeyValueScan)
		}
		lim = lim.withDefaults()
		if int64(len(req.GetPrefix())) > lim.MaxKeyBytes || !utf8.ValidString(req.GetPrefix()) {
			return status.Errorf(codes.InvalidArgument, "prefix: must be valid UTF-8 of at most %d bytes", lim.MaxKeyBytes)
		}
		size := int64(req.GetPageSize())
		switch {
		case size < 0:
			return status.Errorf(codes.InvalidArgument, "page_size: must not be negative, got %d", size)
		case size == 0:
			size = min(DefaultPageSize, lim.MaxPageSize)
		case size > lim.MaxPageSize:
			return status.Errorf(codes.InvalidArgument, "page_size: %d exceeds the limit of %d", size, lim.MaxPageSize)
		}
		page, next, err := sc.Scan(ctx, req.GetPrefix(), req.GetCursor(), int(size), req.GetIncludeValues())
		if err != nil {
			return err
		}
		resp.NextCursor = next
		resp.Entries = make([]*keyvaluev1.Entry, len(page))
		for i, e := range page {
			resp.Entries[i] = &keyvaluev1.Entry{Key: e.Key}
			if req.GetIncludeValues() {
				resp.Entries[i].Value = e.Value
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (k *keyValueService) Count(ctx context.Context, req *keyvaluev1.CountRequest) (*keyvaluev1.CountResponse, error) {
	resp := &keyvaluev1.CountResponse{}
	err := k.call(func(lim Limits) error {
		sc, ok := k.s.driver.(KeyValueScan)
		if !ok {
			return notDeclared(capability.KeyValueScan)
		}
		if !utf8.ValidString(req.GetPrefix()) {
			return status.Error(codes.InvalidArgument, "prefix: must be valid UTF-8")
		}
		n, err := sc.Count(ctx, req.GetPrefix())
		resp.Count = n
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (k *keyValueService) batchDriver(n int, lim Limits) (KeyValueBatch, error) {
	b, ok := k.s.driver.(KeyValueBatch)
	if !ok {
		return nil, notDeclared(capability.KeyValueBatch)
	}
	lim = lim.withDefaults()
	if n > int(lim.MaxBatchSize) {
		return nil, status.Errorf(codes.InvalidArgument, "batch of %d exceeds the limit of %d", n, lim.MaxBatchSize)
	}
	return b, nil
}

func validateKeys(keys []string, lim Limits) error {
	for i, key := range keys {
		if err := ValidateKey("keys["+strconv.Itoa(i)+"]", key, lim); err != nil {
			return err
		}
	}
	return nil
}

func (k *keyValueService) BatchSet(ctx context.Context, req *keyvaluev1.BatchSetRequest) (*keyvaluev1.BatchSetResponse, error) {
	err := k.call(func(lim Limits) error {
		b, err := k.batchDriver(len(req.GetEntries()), lim)
		if err != nil {
			return err
		}
		entries := make([]Entry, len(req.GetEntries()))
		for i, e := range req.GetEntries() {
			if err := ValidateKey("entries["+strconv.Itoa(i)+"].key", e.GetKey(), lim); err != nil {
				return err
			}
			if err := validateValue("entries["+strconv.Itoa(i)+"].value", e.GetValue(), lim); err != nil {
				return err
			}
			entries[i] = Entry{Key: e.GetKey(), Value: e.GetValue()}
		}
		ttl, err := ttlOf("ttl", req.GetTtl())
		if err != nil {
			return err
		}
		if ttl > 0 {
			if _, err := k.ttlDriver(); err != nil {
				return err
			}
		}
		return b.BatchSet(ctx, entries, ttl)
	})
	if err != nil {
		return nil, err
	}
	return &keyvaluev1.BatchSetResponse{}, nil
}

func (k *keyValueService) BatchGet(ctx context.Context, req *keyvaluev1.BatchGetRequest) (*keyvaluev1.BatchGetResponse, error) {
	resp := &keyvaluev1.BatchGetResponse{}
	err := k.call(func(lim Limits) error {
		b, err := k.batchDriver(len(req.GetKeys()), lim)
		if err != nil {
			return err
		}
		if err := validateKeys(req.GetKeys(), lim); err != nil {
			return err
		}
		values, found, err := b.BatchGet(ctx, req.GetKeys())
		if err != nil {
			return err
		}
		if len(values) != len(req.GetKeys()) || len(found) != len(req.GetKeys()) {
			return status.Errorf(codes.Internal, "driver returned %d values for %d keys", len(values), len(req.GetKeys()))
		}
		resp.Results = make([]*keyvaluev1.BatchGetResult, len(values))
		for i, key := range req.GetKeys() {
			resp.Results[i] = &keyvaluev1.BatchGetResult{Key: key, Found: found[i], Value: values[i]}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (k *keyValueService) BatchDelete(ctx context.Context, req *keyvaluev1.BatchDeleteRequest) (*keyvaluev1.BatchDeleteResponse, error) {
	resp := &keyvaluev1.BatchDeleteResponse{}
	err := k.call(func(lim Limits) error {
		b, err := k.batchDriver(len(req.GetKeys()), lim)
		if err != nil {
			return err
		}
		if err := validateKeys(req.GetKeys(), lim); err != nil {
			return err
		}
		existed, err := b.BatchDelete(ctx, req.GetKeys())
		if err != nil {
			return err
		}
		if len(existed) != len(req.GetKeys()) {
			return status.Errorf(codes.Internal, "driver returned %d results for %d keys", len(existed), len(req.GetKeys()))
		}
		resp.Existed = existed
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
