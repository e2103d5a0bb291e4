package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/pandachat/pandachat/cluster"
	"github.com/pandachat/pandachat/media"
	"github.com/pandachat/pandachat/persistence"
)

// clusterMode reports whether cfg asks for several nodes, and refuses cluster
// settings that make no sense without --cluster-peers.
func clusterMode(cfg Config) (bool, error) {
	if len(cfg.ClusterPeers) == 0 {
		if cfg.ClusterListen != "" || cfg.ClusterReplicas != 0 || cfg.ClusterSecret != "" {
			return false, errors.New("--cluster-listen, --cluster-replicas and --cluster-secret need --cluster-peers (cluster mode is on only with it)")
		}
		return false, nil
	}
	if cfg.Store == "memory" {
		return false, errors.New("--store memory and --cluster-peers do not go together: cluster mode keeps its data in the cluster")
	}
	return true, nil
}

// openCluster joins the cluster and opens the replicated store on it, and the
// object store that keeps media bytes for every node.
func openCluster(cfg Config, log *slog.Logger) (*cluster.Node, persistence.Store, media.Blobs, error) {
	node, err := cluster.Start(cluster.Options{
		Name:         cfg.NodeName,
		Listen:       cfg.ClusterListen,
		Peers:        cfg.ClusterPeers,
		Replicas:     cfg.ClusterReplicas,
		Secret:       cfg.ClusterSecret,
		Dir:          filepath.Join(cfg.DataDir, "cluster"),
		Sync:         cfg.Sync,
		StartTimeout: cfg.ClusterStartTimeout,
		Logger:       log,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	timeout := cfg.ClusterStartTimeout
	if timeout <= 0 {
		timeout = cluster.DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	store, err := persistence.OpenJetStream(ctx, node.JetStream(), persistence.JetStreamOptions{Replicas: node.Replicas(), Logger: log})
	if err != nil {
		node.Close()
		return nil, nil, nil, fmt.Errorf("cluster store: %w", err)
	}
	blobs, err := persistence.OpenJetStreamBlobs(ctx, store)
	if err != nil {
		node.Close()
		return nil, nil, nil, fmt.Errorf("cluster media store: %w", err)
	}
	return node, store, blobs, nil
}

// clusterHandler serves GET /cluster and a /readyz that also asks whether the
// node can write; every other request goes to next.
func clusterHandler(node *cluster.Node, next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cluster", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Node  string         `json:"node"`
			Peers []cluster.Peer `json:"peers"`
		}{node.Name(), node.Peers()})
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := node.Ready(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": "cluster: " + err.Error()})
			return
		}
		next.ServeHTTP(w, r)
	})
	mux.Handle("/", next)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
