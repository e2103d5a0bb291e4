package persistence

import "fmt"

// Recalls, reactions and read positions are not in cluster mode yet: the
// stream keeps a room's history as whole batches, and erasing a recalled
// message's content from it is still to be built.
var errClusterEvents = fmt.Errorf("%w in cluster mode yet", ErrUnsupported)

// SupportsEvents: not yet; rooms refuse recalls and reactions.
func (s *JetStream) SupportsEvents() bool { return false }

func (s *JetStream) Reactions(string, uint64, string) ([]byte, []byte, error) {
	return nil, nil, errClusterEvents
}

// History is MessagesBefore and LastID: without events there is nothing to
// pass over and no reaction to add.
func (s *JetStream) History(room string, before uint64, limit int, _ HistoryQuery) (HistoryPage, error) {
	var page HistoryPage
	last, err := s.LastID(room)
	if err != nil {
		return page, err
	}
	msgs, err := s.MessagesBefore(room, before, limit)
	if err != nil {
		return page, err
	}
	page.LastID = last
	for _, m := range msgs {
		page.Items = append(page.Items, HistoryItem{Message: m})
		page.LastID = max(page.LastID, m.ID)
	}
	return page, nil
}

func (s *JetStream) MarkRead([]ReadMark) error { return errClusterEvents }

func (s *JetStream) ReadPositions(string) ([]ReadPosition, error) { return nil, errClusterEvents }

func (s *JetStream) ReadPosition(string, string) (uint64, error) { return 0, errClusterEvents }
